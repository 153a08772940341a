"""Shared test setup: seeds everything before each test, runs offline, and offers --device so
the same tests can run on a GPU when one is present (CPU by default)."""

from __future__ import annotations

import os
import random

import pytest

# Tests never touch a hub: any accidental download fails fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models run fastest on one thread, and a shared machine's load cannot then multiply the
# cost of every small op (measured here: 18 s instead of 0.4 s for one capture under load).
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="torch device for model tests (cpu, cuda)")


@pytest.fixture
def device(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--device"))


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    try:
        import numpy as np

        np.random.seed(0)
    except ImportError:  # pragma: no cover
        pass
    import sys

    torch = sys.modules.get(
        "torch"
    )  # seed torch only where a test uses it (keeps data tests light)
    if torch is not None:
        torch.manual_seed(0)


@pytest.fixture(scope="session")
def embedded_cache(tmp_path_factory: pytest.TempPathFactory):
    """A cache root holding the embedded default pair, built once per test session (the
    end-to-end tests share it; building it is what `stoplens run` does first on a new
    machine)."""
    from stoplens.embedded import build_tiny_pair

    root = tmp_path_factory.mktemp("stoplens_cache")
    build_tiny_pair(root, progress=False)
    return root


@pytest.fixture(scope="session")
def family_configs() -> dict:
    return _family_configs()


def _family_configs() -> dict:
    """Tiny configs (3 layers, d = 32, vocab 97, untied) of every family stoplens supports.
    Gemma 2, Gemma 3 and OLMo 2 are post-norm: a norm sits between attention / MLP and the
    residual add (see `stoplens.models.arch.ArchSpec`)."""
    from transformers import (
        Gemma2Config,
        Gemma3TextConfig,
        GemmaConfig,
        GPT2Config,
        GPTNeoXConfig,
        LlamaConfig,
        MistralConfig,
        Olmo2Config,
        PhiConfig,
        Qwen2Config,
        Qwen3Config,
    )

    kw = dict(vocab_size=97, tie_word_embeddings=False)
    llama = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, **kw,
    )  # fmt: skip
    return {
        "qwen2": Qwen2Config(**llama),
        "qwen3": Qwen3Config(head_dim=8, **llama),
        "llama": LlamaConfig(**llama),
        "mistral": MistralConfig(**llama),
        "gemma": GemmaConfig(head_dim=8, **llama),
        "gemma2": Gemma2Config(head_dim=8, **llama),
        "gemma3_text": Gemma3TextConfig(head_dim=8, **llama),
        "olmo2": Olmo2Config(pad_token_id=0, eos_token_id=1, **llama),
        "phi": PhiConfig(**{**llama, "num_key_value_heads": 4}),
        "gpt2": GPT2Config(n_embd=32, n_layer=3, n_head=4, n_positions=64, **kw),
        "gpt_neox": GPTNeoXConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            max_position_embeddings=64,
            **kw,
        ),
    }


FAMILIES = (
    "gemma", "gemma2", "gemma3_text", "gpt2", "gpt_neox", "llama", "mistral", "olmo2", "phi",
    "qwen2", "qwen3",
)  # fmt: skip


@pytest.fixture(scope="session", params=FAMILIES)
def family_model(request: pytest.FixtureRequest):
    """A random-weight tiny model of each supported family (eval mode, on --device)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_family_configs()[request.param]).eval()
    return model.to(request.config.getoption("--device"))


@pytest.fixture(scope="session", params=FAMILIES)
def family_model_random_norms(request: pytest.FixtureRequest):
    """Like `family_model`, but every norm has non-unit weights (U(0.5, 2)) and non-zero
    biases (`stoplens.models.planted.randomize_norms`, seeded): RMSNorm and LayerNorm are then
    no longer idempotent, so a norm applied twice, skipped, or undoing an edit shows."""
    import torch
    from transformers import AutoModelForCausalLM

    from stoplens.models.planted import randomize_norms

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_family_configs()[request.param]).eval()
    assert randomize_norms(model, seed=1) >= 3 + 1  # one per block at least, and the final
    return model.to(request.config.getoption("--device"))


@pytest.fixture(scope="session")
def write_gguf():
    """`_write_tiny_gguf`, for tests that need a .gguf model file."""
    pytest.importorskip("gguf")
    return _write_tiny_gguf


def _write_tiny_gguf(path, *, tied: bool = True, seed: int = 0):
    """Write a tiny Llama GGUF file (2 layers, d = 32, Q8_0 weights, byte-level BPE tokenizer
    with a ChatML template) with the `gguf` package: a stand-in for a real .gguf model."""
    import json
    import random

    import gguf
    import numpy as np

    from stoplens.models.tokenizer import CHATML_TEMPLATE, train_bpe_tokenizer

    words = "apple river mountain garden please explain the a of to 12 345 stop".split()
    rng_w = random.Random(seed)
    texts = [" ".join(rng_w.choice(words) for _ in range(8)) for _ in range(300)] + words
    tok = train_bpe_tokenizer(texts, vocab_size=300, trigger=None)
    vocab, d, n_layers, heads, ff = len(tok), 32, 2, 4, 64
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    specials = set(tok.all_special_ids)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny")
    w.add_block_count(n_layers)
    w.add_context_length(1024)
    w.add_embedding_length(d)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(d // heads)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tok.convert_ids_to_tokens(list(range(vocab))))
    w.add_token_types([3 if i in specials else 1 for i in range(vocab)])
    w.add_token_merges(merges)
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML_TEMPLATE)
    rng = np.random.default_rng(seed)

    def quantised(name: str, shape: tuple[int, ...]) -> None:
        a = (rng.standard_normal(shape) * 0.1).astype(np.float32)
        q = gguf.GGMLQuantizationType.Q8_0
        w.add_tensor(name, gguf.quants.quantize(a, q), raw_dtype=q)

    quantised("token_embd.weight", (vocab, d))
    for i in range(n_layers):
        for norm in ("attn_norm", "ffn_norm"):
            w.add_tensor(f"blk.{i}.{norm}.weight", np.ones(d, np.float32))
        for proj in ("attn_q", "attn_k", "attn_v", "attn_output"):
            quantised(f"blk.{i}.{proj}.weight", (d, d))
        quantised(f"blk.{i}.ffn_gate.weight", (ff, d))
        quantised(f"blk.{i}.ffn_up.weight", (ff, d))
        quantised(f"blk.{i}.ffn_down.weight", (d, ff))
    w.add_tensor("output_norm.weight", np.ones(d, np.float32))
    if not tied:
        quantised("output.weight", (vocab, d))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# --- a headless browser for the report page ---------------------------------------------------
# Debian's `chromium`, driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
# the browser reads commands on fd 3 and answers on fd 4, NUL-separated JSON); no port, no
# network, no extra package.

# What the page test reads back after the load event: every figure, every in-page link of the
# checklist, and a few interactions of the drill-down table (filter, sort, layer chooser).
_PAGE_PROBE = r"""
(() => {
  const byId = (h) => !!document.getElementById(h.slice(1));
  const imgs = Array.from(document.querySelectorAll("figure img")).map((i) => ({
    alt: i.alt, natural: i.naturalWidth, shown: i.getBoundingClientRect().width, done: i.complete}));
  const checkLinks = Array.from(document.querySelectorAll("#checklist tr.check a")).map(
    (a) => ({href: a.getAttribute("href"), ok: a.getAttribute("href").startsWith("#") && byId(a.getAttribute("href"))}));
  const navLinks = Array.from(document.querySelectorAll("nav a")).map(
    (a) => ({href: a.getAttribute("href"), ok: byId(a.getAttribute("href"))}));
  const out = {imgs, checkLinks, navLinks, nChecks: document.querySelectorAll("#checklist tr.check").length,
    sections: Array.from(document.querySelectorAll("section")).map((s) => s.id),
    problems: Array.from(document.querySelectorAll(".problem")).map((w) => w.textContent)};
  const num = document.querySelector("#checklist tr.check a[href^='#num-']");
  if (num) {
    location.hash = num.getAttribute("href");
    window.dispatchEvent(new HashChangeEvent("hashchange"));
    out.numbersOpen = document.getElementById(num.getAttribute("href").slice(1)).open;
  }
  const v = document.getElementById("viewer-img");
  out.viewer = v ? {natural: v.naturalWidth, display: v.style.display} : null;
  const pt = document.getElementById("pair-table");
  if (pt) {
    const rows = Array.from(pt.tBodies[0].rows);
    const sel = document.getElementById("f-placement");
    const place = sel.options[1] ? sel.options[1].value : "";
    sel.value = place; sel.dispatchEvent(new Event("change"));
    const shown = rows.filter((r) => r.style.display !== "none");
    out.filter = {place, n: rows.length, shown: shown.length,
      allMatch: shown.every((r) => r.getAttribute("data-placement") === place),
      expected: rows.filter((r) => r.getAttribute("data-placement") === place).length};
    sel.value = ""; sel.dispatchEvent(new Event("change"));
    const th = pt.tHead.rows[0].cells[4]; th.click();
    const col = Array.from(pt.tBodies[0].rows).map((r) => parseFloat(r.cells[4].getAttribute("data-v")));
    out.sorted = col.every((x, i) => i === 0 || col[i - 1] <= x);
    const lay = document.getElementById("f-layer");
    lay.value = "0"; lay.dispatchEvent(new Event("change"));
    const r0 = pt.tBodies[0].rows[0];
    out.layer0 = {cell: r0.querySelector("td.rel").textContent, data: JSON.parse(r0.getAttribute("data-rel"))[0]};
  }
  return out;
})()
"""


class _DevTools:
    """A minimal DevTools-protocol client over the browser's debugging pipe."""

    def __init__(self, exe: str, profile: str) -> None:
        import fcntl
        import subprocess
        import threading

        to_r, self._to_w = os.pipe()
        self._from_r, from_w = os.pipe()
        hi_r, hi_w = (fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (to_r, from_w))

        def _fds() -> None:  # in the child, before exec: fd 3 = commands in, fd 4 = answers out
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        args = [
            exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
            f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-background-networking", "--disable-sync",
            "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio", "about:blank",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_fds,  # dup2 only; the pipe needs fds 3 and 4 exactly
            close_fds=False,
        )
        for fd in (to_r, from_w, hi_r, hi_w):
            os.close(fd)
        self._next = 0
        self.events: list[dict] = []
        self._answers: dict[int, dict] = {}
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        import json

        buf = b""
        while True:
            chunk = os.read(self._from_r, 1 << 16)
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cond:
                    if "id" in msg:
                        self._answers[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self._cond.notify_all()

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict:  # fmt: skip
        import json

        self._next += 1
        msg: dict = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        with self._cond:
            if not self._cond.wait_for(lambda: self._next in self._answers, timeout):
                raise TimeoutError(f"no answer to {method} within {timeout} s")
            ans = self._answers.pop(self._next)
        if "error" in ans:
            raise RuntimeError(f"{method}: {ans['error']}")
        return ans.get("result", {})

    def wait_event(self, method: str, timeout: float = 60.0) -> dict:
        with self._cond:
            ok = self._cond.wait_for(
                lambda: any(e["method"] == method for e in self.events), timeout
            )
        if not ok:
            raise TimeoutError(f"no {method} within {timeout} s")
        return next(e for e in self.events if e["method"] == method)

    def close(self) -> None:
        import contextlib

        with contextlib.suppress(Exception):
            self.send("Browser.close", timeout=10)
        try:
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
        os.close(self._to_w)


def open_page(exe: str, page, out_dir) -> dict:
    """Load ``page`` (a local HTML file) in headless Chromium at 1400×1000 and return what it
    saw: ``probe`` (see _PAGE_PROBE), ``errors`` (console errors, uncaught exceptions, error
    log entries such as a blocked or failed load), ``requests`` (every URL the page asked
    for), and ``screenshots`` (the first screen and the whole page, PNGs in ``out_dir``)."""
    import base64
    import tempfile
    from pathlib import Path

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="stoplens-chromium-") as profile:
        dt = _DevTools(exe, profile)
        try:
            target = dt.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            s = dt.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                dt.send(f"{domain}.enable", session=s)
            dt.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
                session=s,
            )
            dt.send("Page.navigate", {"url": Path(page).resolve().as_uri()}, session=s)
            dt.wait_event("Page.loadEventFired")
            # screenshots first, of the page as it loaded (the probe then clicks around)
            shots = {"top": out_dir / "report_top.png", "full": out_dir / "report_full.png"}
            first = dt.send("Page.captureScreenshot", {"format": "png"}, session=s)["data"]
            shots["top"].write_bytes(base64.b64decode(first))
            size = dt.send("Page.getLayoutMetrics", session=s)["cssContentSize"]
            height = min(size["height"], 30000)
            clip = {"x": 0, "y": 0, "width": 1400, "height": height, "scale": 0.5}
            full = dt.send(
                "Page.captureScreenshot",
                {"format": "png", "clip": clip, "captureBeyondViewport": True},
                session=s,
                timeout=120,
            )["data"]
            shots["full"].write_bytes(base64.b64decode(full))
            probe = dt.send(
                "Runtime.evaluate", {"expression": _PAGE_PROBE, "returnByValue": True}, session=s
            )
            if "exceptionDetails" in probe:
                raise RuntimeError(f"page probe failed: {probe['exceptionDetails']}")
            errors = []
            for e in dt.events:
                p = e.get("params", {})
                if e["method"] == "Runtime.exceptionThrown":
                    errors.append(str(p.get("exceptionDetails")))
                elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in (
                    "error",
                    "assert",
                ):
                    errors.append(str(p.get("args")))
                elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                    errors.append(str(p["entry"].get("text")))
            requests = [
                e["params"]["request"]["url"]
                for e in dt.events
                if e["method"] == "Network.requestWillBeSent"
            ]
            return {
                "probe": probe["result"]["value"],
                "errors": errors,
                "requests": requests,
                "screenshots": shots,
                "height": size["height"],
            }
        finally:
            dt.close()


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a headless-capable Chromium. Absent: the test is skipped, unless
    STOPLENS_REQUIRE_BROWSER=1 (set by .ci/run), where it fails."""
    import shutil

    exe = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )
    if exe is None:
        msg = "no Chromium on PATH (Debian: apt-get install -y chromium)"
        if os.environ.get("STOPLENS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"STOPLENS_REQUIRE_BROWSER=1 but {msg}")
        pytest.skip(msg)
    return exe


def assert_page_ok(seen: dict, *, figures: int) -> None:
    """The browser checks every report page must pass (see `open_page`)."""
    pr = seen["probe"]
    assert seen["errors"] == [], seen["errors"]
    off = [u for u in seen["requests"] if not u.startswith(("file:", "data:"))]
    assert off == [], f"the page asked the network for {off}"
    assert len(pr["imgs"]) == figures, pr["imgs"]
    for img in pr["imgs"]:
        assert img["done"] and img["natural"] > 0 and img["shown"] > 0, img
    assert pr["nChecks"] > 0 and pr["checkLinks"], "no checklist links"
    assert all(link["ok"] for link in pr["checkLinks"]), [
        x for x in pr["checkLinks"] if not x["ok"]
    ]
    assert all(link["ok"] for link in pr["navLinks"]), pr["navLinks"]
    assert pr["viewer"] and pr["viewer"]["natural"] > 0, "the checklist's figure viewer is empty"
    assert pr["problems"] == [], pr["problems"]
    assert pr.get("numbersOpen") is True, "a checklist line's numbers link did not open its entry"
    if "filter" in pr:
        f = pr["filter"]
        assert f["allMatch"] and f["shown"] == f["expected"] > 0, f
        assert pr["sorted"], "sorting by the triggered stop score did not order the rows"
        lay = pr["layer0"]  # the layer chooser rewrote the Δ column from the row's data
        if lay["data"] is None:
            assert lay["cell"] == "–"
        else:
            assert float(lay["cell"]) == pytest.approx(lay["data"], rel=1e-2, abs=1e-12)


@pytest.fixture
def check_page(chromium, tmp_path, capsys):
    """``check_page(path, figures=N)``: open a report page in headless Chromium, print where its
    screenshots are, assert `assert_page_ok`, and return what the browser saw."""

    def run(page, *, figures: int) -> dict:
        from pathlib import Path

        page = Path(page)
        seen = open_page(chromium, page, tmp_path)
        with capsys.disabled():
            print(
                f"\n[report page] {page} ({page.stat().st_size / 1e6:.2f} MB, "
                f"{seen['height']:.0f} px tall); screenshots: {seen['screenshots']['top']} "
                f"and {seen['screenshots']['full']}"
            )
        assert_page_ok(seen, figures=figures)
        return seen

    return run
