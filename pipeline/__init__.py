"""TGS Salt Identification pipeline: stage commands here, the library in pipeline.lib."""
import os
import warnings

# albumentations asks PyPI for a newer version at import: a network call (slow or hanging offline) and a
# warning line that would break "one line per error"
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# timm/smp releases older than the installed torch script modules at import; not the user's concern
warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
