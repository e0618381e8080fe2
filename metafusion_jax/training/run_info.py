"""What a results.json records about the software and machine a run used.

    info = run_info()   # {"package_version": "0.1.0", "git_commit": "1a2b...", "jax_version": ...}

Both trainers put this dict under results["run_info"], so a number in a table can be traced to the
code (package version, git commit when the package runs from a checkout) and the machine
(jax version, backend, device kind and count, process count).
"""
import os
import subprocess

import jax

UNKNOWN = "unknown"


def git_commit(path=None, timeout_s=5.0):
    """The commit hash of the git checkout holding `path` (default: this package), or None.

    A package installed from a wheel has no checkout, and a machine may have no git: both give
    None, never an error. A checkout with uncommitted changes gets the suffix "+dirty".

    Args:
      path: a file or folder inside the checkout; default this module's folder.
      timeout_s: per git call.

    Returns:
      str (40 hex digits, maybe "+dirty") or None.
    """
    folder = os.path.dirname(os.path.abspath(path or __file__))
    if not os.path.isdir(folder):
        folder = os.path.dirname(folder)

    def git(*args):
        out = subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True,
                             timeout=timeout_s, check=False)
        return out.stdout.strip() if out.returncode == 0 else None

    try:
        commit = git("rev-parse", "HEAD")
        if not commit:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def package_version():
    """metafusion_jax.__version__ (imported lazily: the package imports this module)."""
    import metafusion_jax  # noqa: WPS433

    return getattr(metafusion_jax, "__version__", UNKNOWN)


def run_info():
    """The software and machine of this process, as JSON-ready plain values.

    Returns:
      dict with package_version, git_commit (None outside a checkout), jax_version,
      jaxlib_version, backend (e.g. "cpu", "gpu", "tpu"), device_kind, device_count,
      local_device_count and process_count.
    """
    devices = jax.devices()
    try:
        import jaxlib  # noqa: WPS433

        jaxlib_version = getattr(jaxlib, "__version__", UNKNOWN)
    except ImportError:  # pragma: no cover - jaxlib ships with jax
        jaxlib_version = UNKNOWN
    return {
        "package_version": package_version(),
        "git_commit": git_commit(),
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib_version,
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind if devices else UNKNOWN,
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "process_count": jax.process_count(),
    }
