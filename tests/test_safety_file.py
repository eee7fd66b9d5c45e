"""The clinical safety file (docs/safety/) stays true to the code (issue 12).

The hazard log names, for each control, the tests that show it works, as pytest node IDs in backticks
(`tests/test_x.py::test_y`, a parametrised case as `...::test_y[case]`). These tests read the log and fail
when a named test does not exist, when a hazard lacks a part or a control, when a control names no test,
when a risk does not follow the matrix in docs/safety/README.md, or when a hazard the log must cover is
missing. No database: this reads files only.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOG = ROOT / "docs" / "safety" / "hazard-log.md"
README = ROOT / "docs" / "safety" / "README.md"

#: The hazards the log must cover (issue 12), by their IDs, which do not change, and words their titles hold.
REQUIRED = {
    "H-001": "wrong patient",
    "H-002": "wrong drug or dose",
    "H-003": "duplicate supply",
    "H-004": "lost prescription",
    "H-005": "stock-out not communicated",
    "H-006": "identity fraud",
    "H-007": "unauthorised access",
    "H-008": "audit tampering",
    "H-009": "outage during a consultation",
}
PARTS = ("Hazard", "Causes", "Effect", "Initial risk", "Controls in Verity", "Residual risk")
SEVERITIES = ("Minor", "Significant", "Considerable", "Major", "Catastrophic")
LIKELIHOODS = ("Very high", "High", "Medium", "Low", "Very low")

_REFERENCE = re.compile(r"`(tests/[^`]*)`")
_NODE_ID = re.compile(r"(?P<path>tests/[\w/]+\.py)::(?P<name>\w+(?:::\w+)?)(?:\[[^\]\s]+\])?")
_RISK = re.compile(r"^Severity (?P<severity>[A-Za-z]+), likelihood (?P<likelihood>[A-Za-z ]+): \*\*(?P<risk>\d)\*\*\.")
_PART = re.compile(r"^\*\*(?P<name>[^*\n]+?)\.\*\*", re.M)
_CONTROL = re.compile(r"^- \*\*(C-\d{3}-\d+)\*\*", re.M)


@dataclass
class Control:
    id: str
    text: str
    tests: list[str] = field(default_factory=list)


@dataclass
class Hazard:
    id: str
    title: str
    parts: dict[str, str]
    controls: list[Control]


# Reading the files -------------------------------------------------------------------------------------

def parse(log: str) -> list[Hazard]:
    """One Hazard per `## H-nnn Title` section, its bold-labelled parts and its `- **C-nnn-n**` controls."""
    hazards = []
    for section in re.split(r"^## (?=H-\d{3} )", log, flags=re.M)[1:]:
        heading, _, body = section.partition("\n")
        hazard_id, _, title = heading.strip().partition(" ")
        labels = list(_PART.finditer(body))
        parts = {label["name"]: body[label.end():following.start() if following else len(body)].strip()
                 for label, following in zip(labels, [*labels[1:], None], strict=True)}
        pieces = _CONTROL.split(parts.get("Controls in Verity", ""))
        controls = [Control(pieces[i], pieces[i + 1], [m.group(1) for m in _REFERENCE.finditer(pieces[i + 1])])
                    for i in range(1, len(pieces), 2)]
        hazards.append(Hazard(hazard_id, title.strip(), parts, controls))
    return hazards


def matrix(readme: str) -> dict[tuple[str, str], int]:
    """{(likelihood, severity): risk} from the README's table whose header row lists the severities."""
    found: dict[tuple[str, str], int] = {}
    for line in readme.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells and cells[0] in LIKELIHOODS and len(cells) == 1 + len(SEVERITIES):
            for severity, value in zip(SEVERITIES, cells[1:], strict=True):
                found[(cells[0], severity)] = int(value)
    return found


@functools.cache
def defined_tests(path: Path) -> frozenset[str]:
    """The names pytest would collect from a file: top-level `test*` functions and `Test*` classes' methods."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in tree.body:
        if isinstance(node, functions) and node.name.startswith("test"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names |= {f"{node.name}::{item.name}" for item in node.body
                      if isinstance(item, functions) and item.name.startswith("test")}
    return frozenset(names)


# The checks --------------------------------------------------------------------------------------------

def missing_tests(log: str, root: Path = ROOT) -> list[str]:
    """Each reference in the log that is not a node ID of an existing test."""
    problems = []
    for reference in (m.group(1) for m in _REFERENCE.finditer(log)):
        node = _NODE_ID.fullmatch(reference)
        if node is None:
            problems.append(f"`{reference}` is not a test's node ID (tests/test_x.py::test_name)")
            continue
        path = root / node["path"]
        if not Path(node["path"]).name.startswith("test_") or not path.is_file():
            problems.append(f"`{reference}`: there is no test file {node['path']}")
        elif node["name"] not in defined_tests(path):
            problems.append(f"`{reference}`: {node['path']} has no test {node['name']}")
    return problems


def incomplete(hazards: list[Hazard]) -> list[str]:
    """Hazards that miss a part or a control, controls that name no test, IDs out of order."""
    problems = []
    for number, hazard in enumerate(hazards, start=1):
        if hazard.id != f"H-{number:03d}":
            problems.append(f"{hazard.id}: expected H-{number:03d} here (IDs run in order, none skipped)")
        for part in PARTS:
            if not hazard.parts.get(part):
                problems.append(f"{hazard.id}: no {part!r}")
        if not hazard.controls:
            problems.append(f"{hazard.id}: no control")
        bullets = re.findall(r"^- ", hazard.parts.get("Controls in Verity", ""), re.M)
        if len(bullets) != len(hazard.controls):
            problems.append(f"{hazard.id}: a control without its ID (- **C-nnn-n** ...)")
        for index, control in enumerate(hazard.controls, start=1):
            expected = f"C-{hazard.id[2:]}-{index}"
            if control.id != expected:
                problems.append(f"{hazard.id}: control {control.id} should be {expected}")
            if not control.tests:
                problems.append(f"{control.id}: names no test")
    return problems


def risk_problems(hazards: list[Hazard], risks: dict[tuple[str, str], int]) -> list[str]:
    problems = []
    for hazard in hazards:
        found = {}
        for part in ("Initial risk", "Residual risk"):
            match = _RISK.match(hazard.parts.get(part, ""))
            if match is None:
                problems.append(f"{hazard.id}: {part} does not read 'Severity S, likelihood L: **n**.'")
                continue
            key = (match["likelihood"], match["severity"])
            if key not in risks:
                problems.append(f"{hazard.id}: {part}: no severity {key[1]!r} or likelihood {key[0]!r} in the matrix")
            elif int(match["risk"]) != risks[key]:
                problems.append(f"{hazard.id}: {part}: {key[1]} and {key[0]} give {risks[key]}, not {match['risk']}")
            found[part] = int(match["risk"])
        if len(found) == 2 and found["Residual risk"] > found["Initial risk"]:
            problems.append(f"{hazard.id}: the residual risk is higher than the initial risk")
    return problems


def index_problems(log: str, hazards: list[Hazard]) -> list[str]:
    """The table at the top lists every hazard with its title and both risks, as the sections say."""
    rows = re.findall(r"^\| (H-\d{3}) \| ([^|]+?) \| (\d) \| (\d) \|$", log, re.M)
    sections = [(h.id, h.title, _RISK.match(h.parts.get("Initial risk", "")),
                 _RISK.match(h.parts.get("Residual risk", ""))) for h in hazards]
    expected = [(i, t, a["risk"] if a else "?", r["risk"] if r else "?") for i, t, a, r in sections]
    if [row[0] for row in rows] != [row[0] for row in expected]:
        return [f"the index table lists {[row[0] for row in rows]}, the sections {[row[0] for row in expected]}"]
    return [f"the index table says {row}, the section {section}" for row, section in zip(rows, expected, strict=True)
            if row != section]


def uncovered(hazards: list[Hazard]) -> list[str]:
    titles = {hazard.id: hazard.title.lower() for hazard in hazards}
    return [f"{hazard_id} ({words}) is missing" for hazard_id, words in REQUIRED.items()
            if words not in titles.get(hazard_id, "")]


# The tests ---------------------------------------------------------------------------------------------

def test_every_test_the_hazard_log_names_exists():
    problems = missing_tests(LOG.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


def test_every_hazard_has_its_parts_and_every_control_names_a_test():
    hazards = parse(LOG.read_text(encoding="utf-8"))
    assert hazards, "no hazards found in the log"
    problems = incomplete(hazards)
    assert not problems, "\n".join(problems)


def test_the_log_covers_the_hazards_it_must():
    problems = uncovered(parse(LOG.read_text(encoding="utf-8")))
    assert not problems, "\n".join(problems)


def test_each_risk_follows_the_matrix_and_the_index_agrees():
    risks = matrix(README.read_text(encoding="utf-8"))
    assert len(risks) == len(SEVERITIES) * len(LIKELIHOODS), "the README's risk matrix is incomplete"
    log = LOG.read_text(encoding="utf-8")
    hazards = parse(log)
    problems = risk_problems(hazards, risks) + index_problems(log, hazards)
    assert not problems, "\n".join(problems)


def test_the_checks_catch_what_they_look_for(tmp_path):
    """Broken logs are reported: a test renamed away, a file that is not there, a control with no test,
    a hazard with no control, a required hazard left out, a risk that is not the matrix's."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_here.py").write_text(
        "import pytest\n\n\n@pytest.mark.parametrize('x', [1])\ndef test_present(x):\n    assert x\n\n\n"
        "class TestGroup:\n    def test_method(self):\n        assert True\n\n\ndef helper():\n    pass\n")
    good = ("`tests/test_here.py::test_present` `tests/test_here.py::test_present[1]` "
            "`tests/test_here.py::TestGroup::test_method`")
    assert missing_tests(good, tmp_path) == []
    assert len(missing_tests("`tests/test_here.py::test_gone` `tests/test_here.py::helper`", tmp_path)) == 2
    assert "no test file" in missing_tests("`tests/test_nowhere.py::test_present`", tmp_path)[0]
    assert "not a test's node ID" in missing_tests("`tests/test_here.py`", tmp_path)[0]

    risks = matrix(README.read_text(encoding="utf-8"))
    section = ("## H-001 Wrong patient\n\n**Hazard.** h\n\n**Causes.** c\n\n**Effect.** e\n\n"
               "**Initial risk.** Severity Major, likelihood Medium: **3**.\n\n**Controls in Verity.**\n{controls}\n"
               "**Residual risk.** Severity Major, likelihood Low: **{residual}**. r\n")
    with_test = "- **C-001-1** A control. Tests: `tests/test_here.py::test_present`.\n"
    sound = parse(section.format(controls=with_test, residual=3))
    assert incomplete(sound) == [] and risk_problems(sound, risks) == []
    assert incomplete(parse(section.format(controls="- **C-001-1** A control with no test.\n", residual=3))) \
        == ["C-001-1: names no test"]
    assert "H-001: no control" in incomplete(parse(section.format(controls="", residual=3)))
    assert incomplete(parse(section.format(controls=with_test + "- A control without an ID.\n", residual=3)))
    assert risk_problems(parse(section.format(controls=with_test, residual=2)), risks) == [
        "H-001: Residual risk: Major and Low give 3, not 2"]
    assert risk_problems(parse(section.format(controls=with_test, residual=3).replace("Medium", "Very low")
                               .replace("**3**", "**2**", 1)), risks) == [
        "H-001: the residual risk is higher than the initial risk"]
    assert len(uncovered(sound)) == len(REQUIRED) - 1
