"""The TraX program against clients that misbehave: half a message and a closed pipe, a message that never ends,
garbage. Each must end the program within seconds, with one line on stderr, without its memory growing.

The program runs with the demo model as the toolkit starts it. After its handshake its address space is capped
(``prlimit --as``) at its size then + 512 MiB: a reader that grows without bound hits the cap (and the peak resident
size, VmHWM, shows it) instead of taking the machine down. The cap cannot be set at the start: importing torch
alone reserves gigabytes of address space.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("trax", reason="vot-trax is not installed (pip install 'lorat-plugin[vot]')")

MIB = 1024 * 1024
EXIT_WITHIN_S = 10.0
GROWTH_LIMIT_KIB = 256 * 1024


def status_kib(pid: int, field: str) -> int:
    """A ``VmXXX:  N kB`` field of /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def start_capped_program(tmp_path: Path) -> tuple[subprocess.Popen, int, Path]:
    """The program with the demo model, after its handshake, its address space capped. Returns (process, VmHWM
    after the handshake in KiB, stderr file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORAT_")}
    env.update(TRAX="1", LORAT_DEVICE="cpu")
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "lorat_plugin.trackers.trax_server"], cwd=tmp_path,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env)
    hello = process.stdout.readline()
    assert hello.startswith(b"@@TRAX:hello"), stderr_path.read_text()
    # The library's pipe buffer and our reader are set up; nothing read yet.
    cap = status_kib(process.pid, "VmSize") * 1024 + 512 * MIB
    subprocess.run(["prlimit", f"--pid={process.pid}", f"--as={cap}"], check=True)
    # Drain what the program writes so it never blocks on a full stdout pipe.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return process, status_kib(process.pid, "VmHWM"), stderr_path


def watch_until_exit(process: subprocess.Popen, timeout_s: float) -> tuple[int | None, int]:
    """Poll VmHWM until the program exits or the time is up. Returns (exit status or None, last VmHWM in KiB)."""
    peak = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            peak = status_kib(process.pid, "VmHWM")
        except (FileNotFoundError, KeyError, ProcessLookupError):  # a zombie has no Vm lines
            pass
        if process.poll() is not None:
            return process.returncode, peak
        time.sleep(0.05)
    return None, peak


def send(process: subprocess.Popen, data: bytes, close: bool) -> None:
    try:
        process.stdin.write(data)
        process.stdin.flush()
        if close:
            process.stdin.close()
    except BrokenPipeError:  # the program already refused it
        pass


def send_forever(process: subprocess.Popen, chunk: bytes) -> None:
    """A message that never ends: write until the program closes its end."""
    try:
        while process.poll() is None:
            process.stdin.write(chunk)
            process.stdin.flush()
    except (BrokenPipeError, ValueError, OSError):
        pass


MALFORMED = {
    "truncated_message_then_eof": (b'@@TRAX:initialize "file://x', "in the middle of a message"),
    "truncated_escape_then_eof": (b'@@TRAX:frame "color=file:///tmp/a\\', "in the middle of a message"),
    "garbage_line": (b"\x00\x01hello there, not TraX\n", "not a TraX message"),
    "unknown_message_type": (b"@@TRAX:format c:\n", "not a TraX message"),
}


@pytest.mark.skipif(shutil.which("prlimit") is None or not Path("/proc/self/status").exists(),
                    reason="needs Linux /proc and prlimit (util-linux)")
@pytest.mark.slow
@pytest.mark.parametrize("case", [*MALFORMED, "oversized_message"])
def test_trax_malformed_input_ends_the_program_with_bounded_memory(tmp_path: Path, case: str) -> None:
    process, hwm_after_handshake, stderr_path = start_capped_program(tmp_path)
    try:
        if case == "oversized_message":
            expected = "longer than"
            writer = threading.Thread(target=send_forever, args=(process, b"@@TRAX:frame \"" + b"x" * MIB), daemon=True)
            writer.start()
        else:
            data, expected = MALFORMED[case]
            # garbage is refused with the pipe still open; a truncated message is noticed at EOF
            send(process, data, close=case.endswith("eof"))
        code, peak = watch_until_exit(process, EXIT_WITHIN_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = stderr_path.read_text()
    assert code is not None, f"still running after {EXIT_WITHIN_S} s: {stderr[-2000:]}"
    assert code == 1, stderr[-2000:]
    assert peak - hwm_after_handshake <= GROWTH_LIMIT_KIB, (
        f"peak resident size grew by {(peak - hwm_after_handshake) // 1024} MiB after the handshake")
    errors = [line for line in stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and expected in errors[0], stderr[-2000:]
    assert "Traceback" not in stderr


def test_trax_messages_are_framed_like_vot_trax_across_reads() -> None:
    """A newline inside quotes or after a backslash does not end a message, wherever the pipe splits it."""
    from lorat_plugin.trackers.trax_server import _message_end

    message = b'@@TRAX:frame "color=file:///a\\"b\nc.jpg" "x=1"\n'
    assert _message_end(bytearray(message), 0, False)[0] == len(message) - 1
    for split in range(1, len(message)):
        end, resume, in_quotes = _message_end(bytearray(message[:split]), 0, False)
        if end is None:
            end, _, _ = _message_end(bytearray(message), resume, in_quotes)
        assert end == len(message) - 1, split
