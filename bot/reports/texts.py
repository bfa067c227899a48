"""The reports' Spanish words: `textos.es.yaml` (lines, actions, names) and the glossary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.core.report import Recommendation

HERE = Path(__file__).parent
TEXTS_FILE = HERE / "textos.es.yaml"
GLOSSARY_FILE = HERE / "glossary.es.yaml"


@dataclass(frozen=True, slots=True)
class Term:
    key: str
    name: str
    definition: str


@dataclass(frozen=True)
class Texts:
    data: dict[str, Any]
    glossary: tuple[Term, ...]

    @classmethod
    def load(cls, texts: Path = TEXTS_FILE, glossary: Path = GLOSSARY_FILE) -> Texts:
        data = yaml.safe_load(texts.read_text(encoding="utf-8"))
        terms = yaml.safe_load(glossary.read_text(encoding="utf-8"))
        return cls(
            data,
            tuple(
                Term(key, str(entry["nombre"]), str(entry["definicion"]))
                for key, entry in terms.items()
            ),
        )

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @property
    def weekdays(self) -> list[str]:
        return [str(day) for day in self.data["dias"]]

    @property
    def no_data(self) -> str:
        return str(self.data["sin_datos"])

    def objection(self, intent: str) -> str:
        return str(self.data["objeciones"].get(intent, intent))

    def action(self, item: Recommendation) -> str:
        return str(self.data["acciones"][item.key]).format_map(item.values)

    def line(self, key: str, **values: object) -> str:
        return str(self.data["lineas"][key]).format_map(values)

    def term(self, key: str) -> Term:
        return next(term for term in self.glossary if term.key == key)
