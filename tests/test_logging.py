"""Console logging goes through tqdm, so a log line never lands in the middle of a progress bar."""
import io
import logging

from tqdm import tqdm

from dapt.utils.logging import TqdmHandler


def test_log_line_during_a_progress_bar_stands_on_its_own_line():
    buf = io.StringIO()
    log = logging.getLogger("dapt.test_tqdm_handler")
    h = TqdmHandler(buf)
    h.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(h)
    log.propagate = False
    try:
        bar = tqdm(total=4, file=buf, desc="epoch 1/1", ascii=True, mininterval=0)
        bar.update(1)
        log.warning("hello from the loop")
        bar.update(1)
        bar.close()
    finally:
        log.removeHandler(h)
    text = buf.getvalue()
    lines = [seg for line in text.split("\n") for seg in line.split("\r")]
    assert "hello from the loop" in lines  # alone on its line: not glued to the bar's text
    assert "epoch 1/1" in text
    # the bar was cleared before the line was written and drawn again after it
    before, after = text.split("hello from the loop")
    assert "epoch 1/1" in after
