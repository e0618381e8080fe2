"""Recommendation data (MetaMMF): `InteractionData`, its validator and the four sources."""
