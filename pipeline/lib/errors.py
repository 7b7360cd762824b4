"""The one error type for expected failures, and the wrapper that turns it into a one-line exit."""
import errno
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
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        print(f"error: cannot write {err.filename or 'the work folder'} ({err.strerror}); pass --workdir DIR "
              "(or set TGS_WORKDIR) to a writable folder", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        release_all()
