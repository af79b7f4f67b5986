"""The errors a user can cause. Each carries one sentence meant for them; the CLI catches
`SfcliError` and prints that sentence with a non-zero exit, never a traceback."""


class SfcliError(Exception):
    """Base of every error whose message is meant for the user."""


class ConfigError(SfcliError, ValueError):
    """An invalid model configuration."""


class DataError(SfcliError, ValueError):
    """A dataset the user pointed at cannot be used."""


class Reason(str):
    """Why a video failed, in a few words for people, with the decoders' own messages as
    `details`. It is a str so that it travels wherever a reason already does (out of loader
    workers, in the frame cache, in a run's state) and keeps the details on the way."""

    details: str

    def __new__(cls, reason: str, details: str = ""):
        self = super().__new__(cls, reason)
        self.details = details
        return self


class VideoError(SfcliError, RuntimeError):
    """One video cannot be opened or decoded: str() is the short reason (a Reason), `details`
    the decoders' own messages (empty where no decoder ran)."""

    def __init__(self, reason: str, details: str = ""):
        super().__init__(reason)
        self.reason = Reason(reason, details or getattr(reason, "details", ""))

    @property
    def details(self) -> str:
        return self.reason.details

    def __str__(self) -> str:
        return self.reason


class CheckpointError(SfcliError):
    """A checkpoint that cannot be read, written or loaded."""


class WriteError(SfcliError, OSError):
    """A file that cannot be written (no space, no permission, no such folder); the previous
    version of it is left whole, and `kept` names it where that is worth saying."""

    def __init__(self, reason: str, kept: str | None = None):
        super().__init__(reason if kept is None else f"{reason}; {kept} is intact")
        self.reason, self.kept = reason, kept


class TrainingError(SfcliError, RuntimeError):
    """A run that cannot start or go on."""


class AblationError(SfcliError, ValueError):
    """A study that cannot run as asked."""


class ExportError(SfcliError, RuntimeError):
    """An exported network that does not compute what sfcli's does."""


class Interrupted(SfcliError):
    """Ctrl-C or SIGTERM: a checkpoint was written and the run can resume."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
