"""Shadow variations: bounded, named changes of a strategy's parameters, validated by its parameter model.

`conf/variations.yml` lists each variation as a change: `set` (absolute values) and `scale` (factors) of
named parameters, for every strategy (top level) or for one (`strategies.<name>`), plus an ML confidence
threshold and a size multiplier. A change is applied to the champion's default and to every tier, then
validated by the strategy's own model (`controller.scan.strategy_params`), so an unknown key or a value
out of range is refused with the file, the variation and the key in the message.

CHAMPION is the active parameter set itself. A variation never edits the champion: it is a new object.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from controller.config_base import PROJECT_ROOT, ConfigError, Frozen, load_model
from controller.scan.strategy_params import TIERS, StrategiesConfig, StrategyConfig
from shadow.settings import RecommendConfig, RollbackConfig, ShadowSettings

DEFAULT_VARIATIONS = PROJECT_ROOT / "conf" / "variations.yml"
CHAMPION = "CHAMPION"
PREVIOUS = "PREVIOUS"  # the parameters before an applied change, replayed while the change is monitored


class Change(Frozen):
    """Parameter changes: `set` replaces a value, `scale` multiplies it (integers are rounded)."""

    set: dict[str, float] = Field(default_factory=dict)
    scale: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _positive_scales(self) -> Change:
        bad = [k for k, v in self.scale.items() if not 0 < v <= 10]
        if bad:
            raise ValueError(f"scale factors must be in (0, 10]: {', '.join(bad)}")
        both = set(self.set) & set(self.scale)
        if both:
            raise ValueError(f"a parameter is either set or scaled, not both: {', '.join(sorted(both))}")
        return self

    def keys(self) -> set[str]:
        return set(self.set) | set(self.scale)


class VolatilitySizing(Frozen):
    """Size x `low_multiplier` when ATR / close < `low_below`, x `high_multiplier` when above `high_above`."""

    low_below: float = Field(0.02, gt=0, le=1)
    low_multiplier: float = Field(1.5, gt=0, le=5)
    high_above: float = Field(0.05, gt=0, le=1)
    high_multiplier: float = Field(0.5, gt=0, le=5)


class VariationSpec(Frozen):
    description: str = ""
    ml_threshold: float | None = Field(None, ge=0, le=1, description="ML confidence needed, where one is known")
    size_multiplier: float = Field(1.0, gt=0, le=5, description="quote size relative to the champion's")
    volatility_sizing: VolatilitySizing | None = None
    change: Change = Change()
    strategies: dict[str, Change] = Field(default_factory=dict, description="changes for one strategy only")
    only: tuple[str, ...] | None = Field(None, description="the strategies this variation applies to (default all)")


class VariationsFile(Frozen):
    """`conf/variations.yml`."""

    settings: ShadowSettings = ShadowSettings()
    recommend: RecommendConfig = RecommendConfig()
    rollback: RollbackConfig = RollbackConfig()
    variations: dict[str, VariationSpec]

    @model_validator(mode="after")
    def _names(self) -> VariationsFile:
        if CHAMPION in self.variations or PREVIOUS in self.variations:
            raise ValueError("CHAMPION is the active parameter set and PREVIOUS the one before an applied change; "
                             "neither can be defined as a variation")
        bad = [n for n in self.variations if not n.replace("_", "").isalnum() or n != n.upper()]
        if bad:
            raise ValueError(f"variation names are UPPER_CASE words: {', '.join(bad)}")
        return self


@dataclass(frozen=True)
class Variation:
    """One variation of one strategy: its complete parameters, its ML gate and its sizing."""

    name: str
    strategy: str
    section: StrategyConfig[Any]
    ml_threshold: float | None = None
    size_multiplier: float = 1.0
    volatility_sizing: VolatilitySizing | None = None

    @property
    def params_hash(self) -> str:
        return self.section.params_hash()

    def params_json(self) -> dict[str, Any]:
        """What `shadow_variations.params` records: every tier's values and the gates."""
        return {"params": {tier: self.section.params.for_tier(tier).model_dump(mode="json") for tier in TIERS},
                "ml_threshold": self.ml_threshold, "size_multiplier": self.size_multiplier,
                "volatility_sizing": self.volatility_sizing.model_dump() if self.volatility_sizing else None}


def _apply(values: dict[str, Any], change: Change, fields: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for key, value in change.set.items():
        out[key] = round(value) if fields[key].annotation is int else value
    for key, factor in change.scale.items():
        scaled = out[key] * factor
        out[key] = round(scaled) if fields[key].annotation is int else round(scaled, 10)
    return out


def vary(section: StrategyConfig[Any], change: Change, where: str) -> StrategyConfig[Any]:
    """`section` with `change` applied to the default and every tier; errors name `where` and the key."""
    params = section.params
    model = type(params.default)
    fields = model.model_fields
    unknown = sorted(change.keys() - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown parameter {', '.join(unknown)} for {model.__name__}; "
                          f"allowed: {', '.join(fields)}")
    default = _apply(params.default.model_dump(), change, fields)
    tiers = {tier: _apply(p.model_dump(), change, fields) for tier, p in params.tiers.items()}
    try:
        new_params = type(params).model_validate({"default": default, "tiers": tiers})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{where}: out of range for {model.__name__}: {problems}") from None
    return section.model_copy(update={"params": new_params.with_tier_map(params.tier_map)})


def build(spec_file: VariationsFile, champion: StrategiesConfig, source: Path | str = DEFAULT_VARIATIONS,
          *, enabled_only: bool = True) -> list[Variation]:
    """CHAMPION plus every variation that applies, per strategy, in file order."""
    out: list[Variation] = []
    names = dict(champion.items())
    for strategy, section in champion.items():
        if enabled_only and not section.enabled:
            continue
        out.append(Variation(CHAMPION, strategy, section, spec_file.settings.champion_ml_threshold))
    for name, spec in spec_file.variations.items():
        unknown = sorted(set(spec.strategies) - set(names))
        if unknown:
            raise ConfigError(f"{source}: variations.{name}.strategies: unknown strategy {', '.join(unknown)}; "
                              f"allowed: {', '.join(names)}")
        for strategy, section in champion.items():
            if enabled_only and not section.enabled:
                continue
            if spec.only is not None and strategy not in spec.only:
                continue
            varied = vary(section, spec.change, f"{source}: variations.{name}.change")
            if strategy in spec.strategies:
                varied = vary(varied, spec.strategies[strategy], f"{source}: variations.{name}.strategies.{strategy}")
            ml = spec.ml_threshold if spec.ml_threshold is not None else spec_file.settings.champion_ml_threshold
            out.append(Variation(name, strategy, varied, ml, spec.size_multiplier, spec.volatility_sizing))
    return out


def load(path: Path = DEFAULT_VARIATIONS) -> VariationsFile:
    """Load `conf/variations.yml`; errors name the file and the key."""
    return load_model(VariationsFile, path)


def load_variations(champion: StrategiesConfig, path: Path = DEFAULT_VARIATIONS) -> tuple[VariationsFile,
                                                                                           list[Variation]]:
    """The file and every variation of `champion`, validated (errors name the file and key)."""
    spec = load(path)
    return spec, build(spec, champion, path, enabled_only=False)
