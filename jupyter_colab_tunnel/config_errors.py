"""Turn a bad configuration value into a readable message instead of a failed extension."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigError:
    """One configuration value that was rejected; the trait keeps its default."""

    trait: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"trait": self.trait, "message": self.message}
