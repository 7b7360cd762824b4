"""The one error type for expected failures, and the operating system's errors in words (the stage lifecycle
that turns them into a one-line exit is `cli.run_stage`)."""
import errno
import os


class PipelineError(Exception):
    """Bad input or a failed check the user can fix; printed as one line, never as a traceback."""


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
