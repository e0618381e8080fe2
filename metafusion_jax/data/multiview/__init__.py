"""Multi-modal supervised data (Meta Fusion): `MultiModalData`, the simulator and UCI mfeat."""
