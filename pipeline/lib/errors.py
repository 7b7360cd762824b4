"""The one error type for expected failures, and the wrapper that turns it into a one-line exit."""
import errno
import os
import sys


class PipelineError(Exception):
    """Bad input or a failed check the user can fix; printed as one line, never as a traceback."""


def run_stage(main, argv=None) -> None:
    """Run a stage's `main(argv)`; an expected failure prints `error: ...` and exits with status 2. Subnormal
    floats count as zero in a stage that loaded torch at import (one that runs models: `runtime.flush_denormals`)."""
    from .lock import release_all  # here, not at the top: lock.py raises PipelineError

    if "torch" in sys.modules:  # a stage that runs no model (status) does not load torch to set it
        from .runtime import flush_denormals
        flush_denormals()
    try:
        main(argv)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:  # one the stage did not turn into words itself
        print(f"error: {os_error(err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        release_all()


def os_error(err: OSError) -> str:
    """An operating system's error in one line naming the file and what to do; reading and writing told apart
    by whether the file is there and readable (the error itself does not say)."""
    name = err.filename or "a file of the work folder"
    words = err.strerror or str(err)
    if err.errno == errno.ENOSPC:
        return (f"no space left on the disk for {name}; free some space, or pass --workdir DIR on another disk, "
                "then run again (everything finished before is kept)")
    if err.errno == errno.ENOENT:
        return f"{name} is gone ({words}): it vanished while the stage ran, or was never there; run again"
    if err.errno in (errno.EACCES, errno.EPERM) and err.filename and os.path.isfile(err.filename) \
            and not os.access(err.filename, os.R_OK):
        return f"cannot read {name} ({words}); make it readable for this user, then run again"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {name} ({words}); pass --workdir DIR (or set TGS_WORKDIR) to a writable folder"
    return f"{words} on {name}; check the disk and the file, then run again"
