"""What a test stack says when a server dies at start: the end of its log, and a Rust panic's message
(Granian's), which comes before a backtrace longer than that end."""

from __future__ import annotations

from lab_stacks import _tail


def test_a_server_that_panicked_is_reported_with_its_message_not_only_its_backtrace(tmp_path):
    log = tmp_path / "raw-granian.log"
    frames = [f"  {n}: granian::frame_{n}" for n in range(60)]
    log.write_text("\n".join(["starting", "thread 'main' panicked at src/workers.rs:1:", "the panic's message",
                              "note: run with `RUST_BACKTRACE=full`", *frames]) + "\n")
    assert _tail(log).splitlines() == ["thread 'main' panicked at src/workers.rs:1:", "the panic's message",
                                       "note: run with `RUST_BACKTRACE=full`", "...", *frames[-30:]]


def test_a_log_whose_end_holds_the_whole_panic_or_none_is_its_end_alone(tmp_path):
    log = tmp_path / "raw-uwsgi.log"
    log.write_text("x\nthread 'main' panicked at y\nmessage\n")
    assert _tail(log) == "x\nthread 'main' panicked at y\nmessage"
    log.write_text("\n".join(f"line {n}" for n in range(100)) + "\n")
    assert _tail(log).splitlines() == [f"line {n}" for n in range(70, 100)]
    assert _tail(tmp_path / "missing.log") == "(no log)"
