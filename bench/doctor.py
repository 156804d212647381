"""`optbench doctor`: what a crash or a hostile edit left in a results store, and its repair.

Checks, in the order they can block each other: the journal file (a torn or garbage tail, corrupt
records in the middle), its lock (left by a killed writer), then every suite study (RUNNING trials
whose worker is gone or that name none, trials without a run hash), then the temporary files killed
writers left of optbench's own files (the journal's repair copy, reports, checkpoints), in those
folders only. `repair` fixes each finding; nothing that a finished run wrote is ever dropped: a
corrupt line (torn, not JSON, or nested too deep) is moved to `<journal>.torn`, and a record glued onto a
torn one is kept.

Repairs hold the journal's lock, which is never taken from a live holder (bench/journal.py). Moving a
line out of the journal's middle replaces the file, which shifts the byte offsets Optuna's readers keep:
it is done only when no other process has the store open (the exclusive users lock); otherwise only the
tail is repaired, in place, and one line names the processes that hold the store.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import faults, journal
from bench.files import pid_alive


@dataclass
class Finding:
    problem: str
    repaired: bool = False
    harmless: bool = False  # worth knowing, nothing to repair (readers skip it)
    line: int | None = None  # of the journal, for a corrupt line in its middle

    def __str__(self) -> str:
        return f"{'note' if self.harmless else 'repaired' if self.repaired else 'problem'}: {self.problem}"

    @property
    def open(self) -> bool:
        return not (self.repaired or self.harmless)


def salvage(line: bytes) -> tuple[bytes, bytes] | None:
    """(torn prefix, whole record) when a record was glued onto a torn one; None if no record ends it."""
    start = line.find(journal.JOURNAL_PREFIX, 1)
    while start > 0:
        if journal.is_record(line[start:]):
            return line[:start], line[start:]
        start = line.find(journal.JOURNAL_PREFIX, start + 1)
    return None


def check_journal(path: Path, repair: bool) -> list[Finding]:
    """Torn tail and corrupt middle lines of a journal file. Repairing holds the journal's lock; moving a
    middle line aside rewrites the file (os.replace), which only a sole user of the store may do: Optuna's
    readers keep byte offsets into it. With other users only the tail is repaired, in place."""
    if not path.is_file() or path.stat().st_size == 0:
        return []
    if not repair:
        return scan(path.read_bytes(), path, False)[0]
    sole = journal.sole_user(path)
    lock = journal.JournalLock(path)
    try:
        with journal._locked(lock):
            data = path.read_bytes()
            faults.held("doctor:snapshot")
            findings, kept, torn = scan(data, path, True)
            if not findings:
                return findings
            if sole is not None:
                if not rewrite(path, kept, torn, lock):
                    findings = [Finding(f.problem, line=f.line) for f in findings]
                    findings.append(Finding(f"{path}: not rewritten: a plain Optuna client took the journal lock "
                                            "meanwhile; rerun `optbench doctor --repair`"))  # fmt: skip
                return findings
            faults.held("doctor:rewritten")
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
            try:
                journal.repair_torn_tail(fd, path, lock)  # what every append does: safe under live readers
            except journal.LockLost:
                pass  # what is left is reported open below
            finally:
                os.close(fd)
            left = {f.problem for f in scan(path.read_bytes(), path, False)[0]}
            middle = [f for f in findings if f.problem in left]
            for f in middle:
                f.repaired = False
            if middle:
                users = ", ".join(journal.store_users(path)) or "another process"
                numbers = ", ".join(str(f.line) for f in middle if f.line)
                findings.append(Finding(
                    f"{path}: line(s) {numbers} not moved aside: the store is open in {users} (a rewrite would "
                    "shift the byte offsets their readers keep); when they have finished, rerun "
                    "`optbench doctor --repair`"
                ))  # fmt: skip
            return findings
    finally:
        if sole is not None:
            sole.close()


def scan(data: bytes, path: Path, repair: bool) -> tuple[list[Finding], list[bytes], list[bytes]]:
    """(findings, the records to keep, the lines to move aside) of a journal's bytes."""
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    findings: list[Finding] = []
    kept: list[bytes] = []
    torn: list[bytes] = []
    for number, line in enumerate(lines, start=1):
        record, why = journal.parse_record(line)
        if record is not None:
            kept.append(line)
            continue
        glued = salvage(line)
        if glued is not None:
            what = f"line {number}: a record glued onto {len(glued[0])} bytes of a torn one"
            kept.append(glued[1])
            torn.append(glued[0])
        else:
            what = f"line {number}: {why} ({len(line)} bytes)"
            torn.append(line)
        findings.append(Finding(f"{path} {what}", repair, line=number))
    if tail:
        if journal.is_record(tail):
            kept.append(tail)
            findings.append(Finding(f"{path}: the last record lacks its newline", repair))
        else:
            torn.append(tail)
            findings.append(Finding(f"{path}: a torn last record ({len(tail)} bytes)", repair))
    return findings, kept, torn


def rewrite(path: Path, kept: list[bytes], torn: list[bytes], lock: journal.JournalLock) -> bool:
    """Copy `torn` to `<journal>.torn` and replace the journal by `kept` (the caller is its sole user and
    holds `lock`); False, nothing replaced, when the lock was taken meanwhile."""
    torn_path = path.with_name(path.name + journal.TORN_SUFFIX)
    with open(torn_path, "ab") as out:
        out.write(b"".join(t + b"\n" for t in torn))
        out.flush()
        os.fsync(out.fileno())
    fixed = path.with_name(f".{path.name}.{os.getpid()}.part")
    with open(fixed, "wb") as out:
        out.write(b"".join(k + b"\n" for k in kept))
        out.flush()
        os.fsync(out.fileno())
    faults.held("doctor:rewritten")
    if not lock.still_held():  # a plain Optuna client past its grace period may be appending
        fixed.unlink()
        return False
    os.replace(fixed, path)
    return True


def check_lock(path: Path, repair: bool) -> list[Finding]:
    """The journal's symlink lock when no live process holds it (the flock says whether one does), and a
    live holder that has kept it longer than a moment (a paused process: it keeps it until it resumes)."""
    symlink = Path(f"{path}{journal.SYMLINK_SUFFIX}")
    holder = journal.holder_of(path)
    if holder is not None:
        since = holder.get("since")
        if isinstance(since, int | float) and time.time() - since > journal.lock_grace():
            return [Finding(f"{symlink}: held by {journal.describe(holder)}, a live process (paused?): it keeps "
                            "the lock until it finishes or exits", harmless=True)]  # fmt: skip
        return []
    try:
        st = os.lstat(symlink)
    except FileNotFoundError:
        return []
    previous = None
    with contextlib.suppress(OSError), open(f"{path}{journal.WRITE_LOCK_SUFFIX}", "rb") as f:
        previous = journal.read_holder(f.fileno())
    if previous and previous.get("symlink") == [st.st_ino, st.st_mtime_ns]:
        what = f"a journal lock left by {journal.describe(previous)}, which is gone"
    else:
        age = time.time() - st.st_mtime
        if age <= journal.lock_grace():
            return []  # a live Optuna client's, most likely
        target = os.readlink(symlink) if symlink.is_symlink() else None
        dangling = " (a relative link to nothing)" if target and not os.path.isabs(target) else ""
        what = f"a journal lock left {age:.0f} s ago by a killed writer{dangling}"
    if repair:  # the lock's own acquisition breaks it, under the flock: never a new holder's
        with journal._locked(journal.JournalLock(path)):
            pass
    return [Finding(f"{symlink}: {what}", repair)]


def check_studies(store: Any, repair: bool) -> list[Finding]:
    """In every study, suites' and searches' alike: RUNNING trials whose worker is gone (or that name none),
    finished trials holding another number of values than their study has objectives (no reader can rank
    them), and trials without a run hash."""
    import optuna
    from optuna.trial import TrialState

    from bench import codec

    findings = []
    for summary in optuna.get_all_study_summaries(store.storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=store.storage)
        stale = {t.number: why for t, why in store.stale_claims(study)}
        objectives = len(study.directions)
        for t in study.get_trials(deepcopy=False):
            where = f"study '{summary.study_name}' trial {t.number}"
            if t.number in stale:
                if repair:
                    codec.write_stale(store.storage, codec.trial_id(store.storage, study, t))
                findings.append(Finding(f"{where}: RUNNING, {stale[t.number]}; its run is claimable again", repair))
            elif t.state == TrialState.COMPLETE and len(t.values or []) != objectives:
                findings.append(Finding(f"{where}: {len(t.values or [])} value(s) in a study of {objectives} "
                                        "objective(s); results rank it by its first", harmless=True))  # fmt: skip
            elif "run_hash" not in t.user_attrs and t.state != TrialState.RUNNING:
                findings.append(Finding(f"{where}: no run hash ({t.state.name}); results ignore it", harmless=True))
    return findings


def check_parts(patterns: list[tuple[Path, str]], repair: bool) -> list[Finding]:
    """Temporary files (`.NAME.PID.part`) whose writer is gone: only those optbench writes, in the folders
    it writes them to (`(folder, glob of NAME)`), never below them: other files are not ours to delete."""
    findings = []
    for folder, name in patterns:
        for part in folder.glob(f".{name}.*.part") if folder.is_dir() else []:
            pid = part.name.removesuffix(".part").rpartition(".")[2]
            if pid.isdigit() and not pid_alive(int(pid)):
                if repair:
                    part.unlink(missing_ok=True)
                findings.append(Finding(f"{part}: the temporary file of a killed writer", repair))
    return findings


def diagnose(url: str | None, repair: bool, reports: Path) -> list[Finding]:
    """Every finding about the store at `url` (default: results/optbench.journal) and `reports`."""
    from bench.store import Store, default_storage_url

    url = url or default_storage_url()
    findings: list[Finding] = []
    path = Path(url.removeprefix("journal://")).expanduser() if "://" not in url or "journal://" in url else None
    if path is not None:
        journal.lock_grace()  # a bad OPTBENCH_LOCK_GRACE is bad input whatever the store holds
        journal.sniff(path)
        findings += check_lock(path.absolute(), repair)
        findings += check_journal(path.absolute(), repair)
        if any(f.open and "line" in f.problem for f in findings):
            return findings  # a corrupt middle: Optuna cannot read the studies until it is repaired
    store = Store.open(url)
    findings += check_studies(store, repair)
    from bench.checkpoint import results_dir

    patterns = [(reports, "*.html"), (results_dir() / "checkpoints", "*.pt")]
    if path is not None:
        patterns.append((path.parent, path.name))  # the journal's own repair copy
    findings += check_parts(patterns, repair)
    return findings


def summary_line(findings: list[Finding], url: str) -> str:
    left = sum(f.open for f in findings)
    if left:
        return f"{url}: {left} problem(s); `optbench doctor --repair` fixes them"
    repaired = sum(f.repaired for f in findings)
    return f"{url}: {repaired} problem(s) repaired" if repaired else f"{url}: healthy"
