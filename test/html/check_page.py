#!/usr/bin/env python3
"""Render an HTML page in headless Chromium and check what came out; prints TAP.

    check_page.py PAGE.html OUTDIR --expect-text STR [--expect-text STR ...]
                  [--expect-selector-count CLASS=N | CLASS>=N ...] [--min-colors N]
                  [--expect-hue red [--min-hue-pixels N]] [--ignore-class CLASS ...]
    check_page.py --self-test        (checks the PNG decoder alone; no browser needed)

Chromium runs twice on the page (file://, network fetches made to fail): once to take a
1200x900 screenshot (OUTDIR/page.png), once to dump the DOM after layout (OUTDIR/dom.html).
Checks, each one TAP line:
  - the page exists and names no external resource (src/href/url()/@import over the network);
  - the screenshot decodes (PNG: 8-bit grey/RGB/RGBA/palette, non-interlaced, all five
    filter types) and is not blank: at least --min-colors distinct colours (default 8);
  - with --expect-hue, enough pixels of that hue (shading such as hsl(0, 85%, L%) is red);
  - each --expect-text appears in the text of the rendered DOM (entities decoded; the text of
    <head>, <style>, <script> and of elements with an --ignore-class class left out);
  - each --expect-selector-count: how many elements carry that class.
Exits 0 when all passed, 1 when any failed, 2 on bad arguments. Standard library only.
"""

import argparse
import html.parser
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib

TIMEOUT_S = 60
WINDOW = (1200, 900)

# Chromium as root in a container, no GPU, nothing fetched from the network: every host name
# fails to resolve and anything that would go through a proxy goes to a closed port.
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--mute-audio",
    "--force-color-profile=srgb",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
]

# Noise Chromium (and Debian's launcher script) print on every run in a container; left out
# of the diagnostics shown when a run fails.
NOISE = re.compile(
    r"dbus/|Failed to connect to the bus|/usr/bin/chromium: \d+: \[|bytes written to file"
    r"|Fontconfig error|GetVSyncParametersIfAvailable|angle_platform_impl|viz_main_impl"
)

HUES = {"red": 0, "orange": 30, "yellow": 60, "green": 120, "cyan": 180, "blue": 240, "magenta": 300}


class Tap:
    def __init__(self, planned):
        self.planned = planned
        self.n = 0
        self.failed = 0
        print("1..%d" % planned, flush=True)

    def result(self, ok, desc, diag=()):
        self.n += 1
        if not ok:
            self.failed += 1
        # a "#" would start a TAP directive ("# TODO" counts as passed): write it escaped
        desc = desc.replace("#", "\\x23").replace("\n", " ")
        print("%s %d - %s" % ("ok" if ok else "not ok", self.n, desc))
        for line in diag:
            for part in str(line).splitlines() or [""]:
                print("#   " + part)
        sys.stdout.flush()


# ---------------------------------------------------------------------------------------------
# PNG decoding

class PngError(Exception):
    pass


def _unfilter(data, width, height, bpp):
    """Undo the per-scanline filters (PNG spec section 9); returns the raw rows as bytes."""
    stride = width * bpp
    if len(data) < height * (stride + 1):
        raise PngError("image data too short: %d bytes for %d rows of %d" % (len(data), height, stride + 1))
    rows = []
    prior = bytes(stride)
    pos = 0
    for y in range(height):
        ftype = data[pos]
        line = data[pos + 1:pos + 1 + stride]
        pos += stride + 1
        if ftype == 0:  # None
            cur = bytes(line)
        elif ftype == 1:  # Sub: x + a
            cur = bytearray(line)
            for i in range(bpp, stride):
                cur[i] = (cur[i] + cur[i - bpp]) & 0xFF
            cur = bytes(cur)
        elif ftype == 2:  # Up: x + b, bytewise without carries, on whole rows at once
            a = int.from_bytes(line, "little")
            b = int.from_bytes(prior, "little")
            lo = int.from_bytes(b"\x7f" * stride, "little")
            hi = int.from_bytes(b"\x80" * stride, "little")
            cur = (((a & lo) + (b & lo)) ^ ((a ^ b) & hi)).to_bytes(stride, "little")
        elif ftype == 3:  # Average: x + floor((a + b) / 2)
            cur = bytearray(line)
            for i in range(stride):
                left = cur[i - bpp] if i >= bpp else 0
                cur[i] = (cur[i] + ((left + prior[i]) >> 1)) & 0xFF
            cur = bytes(cur)
        elif ftype == 4:  # Paeth: x + the one of a, b, c nearest a + b - c
            cur = bytearray(line)
            for i in range(stride):
                if i >= bpp:
                    left = cur[i - bpp]
                    upleft = prior[i - bpp]
                else:
                    left = upleft = 0
                up = prior[i]
                p = left + up - upleft
                pa = abs(p - left)
                pb = abs(p - up)
                pc = abs(p - upleft)
                if pa <= pb and pa <= pc:
                    pred = left
                elif pb <= pc:
                    pred = up
                else:
                    pred = upleft
                cur[i] = (cur[i] + pred) & 0xFF
            cur = bytes(cur)
        else:
            raise PngError("row %d: unknown filter type %d" % (y, ftype))
        rows.append(cur)
        prior = cur
    return rows


def decode_png(blob):
    """Decode a PNG into (width, height, rows of RGB bytes)."""
    if blob[:8] != b"\x89PNG\r\n\x1a\n":
        raise PngError("not a PNG (bad signature)")
    pos = 8
    ihdr = None
    palette = None
    idat = []
    while pos + 8 <= len(blob):
        length, ctype = struct.unpack(">I4s", blob[pos:pos + 8])
        body = blob[pos + 8:pos + 8 + length]
        crc = blob[pos + 8 + length:pos + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise PngError("truncated %r chunk" % ctype)
        if struct.unpack(">I", crc)[0] != zlib.crc32(ctype + body) & 0xFFFFFFFF:
            raise PngError("bad CRC in %r chunk" % ctype)
        pos += 12 + length
        if ctype == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif ctype == b"PLTE":
            palette = [tuple(body[i:i + 3]) for i in range(0, len(body) - 2, 3)]
        elif ctype == b"IDAT":
            idat.append(body)
        elif ctype == b"IEND":
            break
    if ihdr is None:
        raise PngError("no IHDR chunk")
    width, height, depth, color, comp, filt, interlace = ihdr
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color)
    if channels is None:
        raise PngError("unknown colour type %d" % color)
    if depth != 8:
        raise PngError("bit depth %d not supported (8 only)" % depth)
    if comp != 0 or filt != 0:
        raise PngError("unknown compression %d or filter method %d" % (comp, filt))
    if interlace != 0:
        raise PngError("interlaced PNG not supported")
    if color == 3 and not palette:
        raise PngError("palette image without PLTE")
    if not idat:
        raise PngError("no IDAT chunk")
    try:
        data = zlib.decompress(b"".join(idat))
    except zlib.error as e:
        raise PngError("image data does not inflate: %s" % e)
    rows = _unfilter(data, width, height, channels)
    rgb = []
    for row in rows:
        if color == 2:
            rgb.append(row)
        elif color == 6:  # composite over white, as the page would show
            out = bytearray(width * 3)
            for x in range(width):
                r, g, b, a = row[4 * x:4 * x + 4]
                out[3 * x] = (r * a + 255 * (255 - a)) // 255
                out[3 * x + 1] = (g * a + 255 * (255 - a)) // 255
                out[3 * x + 2] = (b * a + 255 * (255 - a)) // 255
            rgb.append(bytes(out))
        elif color == 0:
            rgb.append(bytes(v for g in row for v in (g, g, g)))
        elif color == 4:
            rgb.append(bytes(v for i in range(0, len(row), 2)
                             for v in ((row[i] * row[i + 1] + 255 * (255 - row[i + 1])) // 255,) * 3))
        else:
            try:
                rgb.append(bytes(v for i in row for v in palette[i]))
            except IndexError:
                raise PngError("palette index out of range")
    return width, height, rgb


def colour_histogram(rows):
    counts = {}
    for row in rows:
        for px in zip(row[0::3], row[1::3], row[2::3]):
            counts[px] = counts.get(px, 0) + 1
    return counts


def hue_of(r, g, b):
    """(hue in degrees, chroma 0-255), or None for greys."""
    mx, mn = max(r, g, b), min(r, g, b)
    c = mx - mn
    if c == 0:
        return None
    if mx == r:
        h = ((g - b) / c) % 6
    elif mx == g:
        h = (b - r) / c + 2
    else:
        h = (r - g) / c + 4
    return h * 60, c


def hue_pixels(counts, hue, min_chroma=24, window=20):
    """Pixels (and distinct colours) within +-window degrees of hue and clearly coloured."""
    n = shades = 0
    for (r, g, b), k in counts.items():
        hc = hue_of(r, g, b)
        if hc is None or hc[1] < min_chroma:
            continue
        d = abs(hc[0] - hue) % 360
        if min(d, 360 - d) <= window:
            n += k
            shades += 1
    return n, shades


# ---------------------------------------------------------------------------------------------
# The rendered DOM

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
        "source", "track", "wbr"}
BLOCK = {"address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "figcaption",
         "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li",
         "main", "nav", "ol", "p", "pre", "section", "table", "tbody", "td", "tfoot", "th",
         "thead", "tr", "ul", "svg", "g", "text"}
HIDDEN = {"head", "style", "script", "template", "title", "noscript"}


class DomText(html.parser.HTMLParser):
    """The text of a DOM dump (entities decoded), and how many elements carry each class."""

    def __init__(self, ignore_classes):
        super().__init__(convert_charrefs=True)
        self.ignore = set(ignore_classes)
        self.parts = []
        self.classes = {}
        self.stack = []  # (tag, hides its text)
        self.hidden = 0

    def _open(self, tag, attrs, selfclosing):
        tag = tag.lower()
        classes = (dict(attrs).get("class") or "").split()
        for c in classes:
            self.classes[c] = self.classes.get(c, 0) + 1
        if (tag == "br" or tag in BLOCK) and not self.hidden:
            self.parts.append("\n")
        if tag in VOID or selfclosing:
            return
        hides = tag in HIDDEN or any(c in self.ignore for c in classes)
        self.stack.append((tag, hides))
        if hides:
            self.hidden += 1

    def handle_starttag(self, tag, attrs):
        self._open(tag, attrs, False)

    def handle_startendtag(self, tag, attrs):
        self._open(tag, attrs, True)

    def handle_endtag(self, tag):
        tag = tag.lower()
        # close up to the matching element (the serialiser's output is well nested)
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                for _, hides in self.stack[i:]:
                    if hides:
                        self.hidden -= 1
                del self.stack[i:]
                break
        if tag in BLOCK and not self.hidden:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)

    def text(self):
        return "".join(self.parts)


EXTERNAL = re.compile(
    r"""(?:\b(?:src|href|xlink:href|srcset|poster|data|action)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//)"""
    r"""|(?:url\(\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//)|(?:@import\b)""",
    re.I,
)


# ---------------------------------------------------------------------------------------------
# Chromium

def find_chromium():
    env = os.environ.get("CHROMIUM")
    if env:
        return shutil.which(env) or (env if os.access(env, os.X_OK) else None)
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def run_chromium(browser, extra, url, outdir, tag, timeout):
    """Run Chromium once; returns (returncode or None on timeout, stdout bytes, seconds, stderr tail)."""
    profile = tempfile.mkdtemp(prefix="check-page-profile.")
    errlog = os.path.join(outdir, "chromium-%s.log" % tag)
    cmd = [browser] + CHROMIUM_FLAGS + ["--user-data-dir=" + profile] + extra + [url]
    env = dict(os.environ)
    env.setdefault("HOME", profile)
    start = time.monotonic()
    rc = None
    out = b""
    with open(errlog, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            pass
        finally:
            # the browser's helpers share its new session: end them all, ours alone
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if rc is None:
                out, _ = proc.communicate()
    secs = time.monotonic() - start
    shutil.rmtree(profile, ignore_errors=True)
    with open(errlog, "rb") as f:
        lines = f.read().decode("utf-8", "replace").splitlines()
    tail = [l for l in lines if not NOISE.search(l)][-15:]
    return rc, out, secs, ["command: " + shlex.join(cmd)] + tail


# ---------------------------------------------------------------------------------------------

def parse_count(spec):
    m = re.fullmatch(r"\s*([A-Za-z_][\w-]*)\s*(>=|=)\s*(\d+)\s*", spec)
    if not m:
        raise argparse.ArgumentTypeError("expected CLASS=N or CLASS>=N, got %r" % spec)
    return m.group(1), m.group(2), int(m.group(3))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("page", nargs="?")
    ap.add_argument("outdir", nargs="?")
    ap.add_argument("--expect-text", action="append", default=[], metavar="STR")
    ap.add_argument("--expect-selector-count", action="append", default=[], type=parse_count,
                    metavar="CLASS=N")
    ap.add_argument("--min-colors", type=int, default=8)
    ap.add_argument("--expect-hue", action="append", default=[], choices=sorted(HUES))
    ap.add_argument("--min-hue-pixels", type=int, default=100)
    ap.add_argument("--ignore-class", action="append", default=[], metavar="CLASS",
                    help="leave the text of elements with this class (e.g. hidden tooltips) "
                         "out of the text searched by --expect-text")
    ap.add_argument("--timeout", type=int, default=TIMEOUT_S, metavar="SECONDS",
                    help="limit on each Chromium run (default %(default)s)")
    ap.add_argument("--allow-external", action="store_true",
                    help="do not fail a page that names resources on the network")
    ap.add_argument("--self-test", action="store_true", help="check the PNG decoder and exit")
    args = ap.parse_args(argv)
    if args.self_test:
        return self_test()
    if not args.page or not args.outdir:
        ap.error("PAGE and OUTDIR are required")
    if not args.expect_text and not args.expect_selector_count:
        ap.error("give at least one --expect-text or --expect-selector-count")

    tap = Tap(5 + len(args.expect_hue) + len(args.expect_text) + len(args.expect_selector_count))
    page = os.path.abspath(args.page)
    os.makedirs(args.outdir, exist_ok=True)
    outdir = os.path.abspath(args.outdir)
    png_path = os.path.join(outdir, "page.png")
    dom_path = os.path.join(outdir, "dom.html")
    for stale in (png_path, dom_path):
        if os.path.exists(stale):
            os.remove(stale)

    # 1. the page
    try:
        with open(page, "rb") as f:
            source = f.read().decode("utf-8", "replace")
    except OSError as e:
        source = None
        tap.result(False, "page %s can be read" % args.page, [str(e)])
    if source is not None:
        ext = sorted(set(m.group(0) for m in EXTERNAL.finditer(source)))
        tap.result(not ext or args.allow_external,
                   "page %s (%d bytes) is self-contained%s"
                   % (args.page, len(source), " (not required: --allow-external)" if ext else ""),
                   ["names external resources: %s" % ", ".join(ext[:10])] if ext else [])

    browser = find_chromium()
    rest = 4 + len(args.expect_hue) + len(args.expect_text) + len(args.expect_selector_count)
    if browser is None or source is None:
        why = ("no chromium: neither chromium nor chromium-browser is on PATH "
               "(Debian: apt-get install chromium)") if browser is None else "the page could not be read"
        for i in range(rest):
            tap.result(False, "headless Chromium checks (%d of %d)" % (i + 1, rest), [why] if i == 0 else [])
        return 1

    url = "file://" + page
    # 2-4. the screenshot
    rc, _, secs, diag = run_chromium(
        browser, ["--screenshot=" + png_path, "--window-size=%d,%d" % WINDOW], url, outdir, "screenshot", args.timeout)
    shot_ok = rc == 0 and os.path.isfile(png_path) and os.path.getsize(png_path) > 0
    tap.result(shot_ok, "chromium takes a screenshot (%s, %.1f s)" % (os.path.basename(browser), secs),
               [] if shot_ok else ["timed out after %d s" % args.timeout if rc is None else
                                   "exit status %s%s" % (rc, "" if os.path.isfile(png_path) else ", no PNG written")]
               + diag)
    counts = None
    if shot_ok:
        try:
            with open(png_path, "rb") as f:
                w, h, rows = decode_png(f.read())
            counts = colour_histogram(rows)
            tap.result(True, "screenshot decodes: %dx%d %s" % (w, h, png_path))
        except (PngError, struct.error) as e:
            tap.result(False, "screenshot decodes", [str(e)])
    else:
        tap.result(False, "screenshot decodes", ["no screenshot"])
    if counts is not None:
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:5]
        tap.result(len(counts) >= args.min_colors,
                   "screenshot is not blank: %d distinct colours (need %d)" % (len(counts), args.min_colors),
                   [] if len(counts) >= args.min_colors else
                   ["commonest: " + ", ".join("#%02x%02x%02x x%d" % (c + (k,)) for c, k in top)])
        for hue in args.expect_hue:
            n, shades = hue_pixels(counts, HUES[hue])
            tap.result(n >= args.min_hue_pixels,
                       "screenshot has %s shading: %d pixels in %d shades (need %d pixels)"
                       % (hue, n, shades, args.min_hue_pixels))
    else:
        tap.result(False, "screenshot is not blank", ["no decoded screenshot"])
        for hue in args.expect_hue:
            tap.result(False, "screenshot has %s shading" % hue, ["no decoded screenshot"])

    # 5. the DOM after layout
    rc, out, secs, diag = run_chromium(browser, ["--dump-dom"], url, outdir, "dump-dom", args.timeout)
    dom = out.decode("utf-8", "replace")
    with open(dom_path, "w", encoding="utf-8") as f:
        f.write(dom)
    dom_ok = rc == 0 and "<body" in dom
    tap.result(dom_ok, "chromium dumps the DOM (%d bytes, %.1f s)" % (len(dom), secs),
               [] if dom_ok else ["timed out after %d s" % args.timeout if rc is None else
                                  "exit status %s" % rc] + diag)
    parser = DomText(args.ignore_class)
    parser.feed(dom)
    parser.close()
    text = parser.text()
    for s in args.expect_text:
        ok = s in text
        diag = []
        if not ok:
            snippet = re.sub(r"\s+", " ", text).strip()
            diag = ["not in the page's text (%d characters): %r" % (len(text), snippet[:600])]
        tap.result(ok, "page text contains %r" % s, diag)
    for cls, op, n in args.expect_selector_count:
        got = parser.classes.get(cls, 0)
        ok = got == n if op == "=" else got >= n
        tap.result(ok, "%d elements with class %r (expected %s%d)" % (got, cls, "" if op == "=" else ">=", n))
    return 1 if tap.failed else 0


# ---------------------------------------------------------------------------------------------
# Self-test of the decoder: images filtered with each filter type by an encoder written here
# from the spec, plus the colour-type conversions, round-tripped through decode_png.

def _encode_png(width, height, color, rows, filters, palette=None):
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    bpp = channels
    raw = bytearray()
    prior = bytes(width * bpp)
    for y, row in enumerate(rows):
        ft = filters[y % len(filters)]
        out = bytearray()
        for i, x in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b = prior[i]
            c = prior[i - bpp] if i >= bpp else 0
            if ft == 0:
                pred = 0
            elif ft == 1:
                pred = a
            elif ft == 2:
                pred = b
            elif ft == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            out.append((x - pred) % 256)
        raw.append(ft)
        raw += out
        prior = row

    def chunk(t, body):
        return struct.pack(">I", len(body)) + t + body + struct.pack(">I", zlib.crc32(t + body) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0))
    if palette:
        png += chunk(b"PLTE", bytes(v for p in palette for v in p))
    # split the data over two IDAT chunks, as encoders may
    z = zlib.compress(bytes(raw))
    return png + chunk(b"IDAT", z[:len(z) // 2]) + chunk(b"IDAT", z[len(z) // 2:]) + chunk(b"IEND", b"")


def self_test():
    import random
    rnd = random.Random(1234)
    cases = []
    w, h = 37, 23
    for color in (2, 6, 0, 4, 3):
        ch = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
        palette = [(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)) for _ in range(16)] if color == 3 else None
        # smooth gradients plus noise, so every predictor gets non-trivial neighbours
        rows = []
        for y in range(h):
            if color == 3:
                rows.append(bytes(rnd.randrange(16) for _ in range(w)))
            else:
                rows.append(bytes(((x * 7 + y * 11 + c * 50) + rnd.randrange(40)) % 256
                                  if color not in (4, 6) or c < ch - 1 else rnd.choice((0, 128, 255))
                                  for x in range(w) for c in range(ch)))
        for filters in ([0], [1], [2], [3], [4], [0, 1, 2, 3, 4], [4, 3, 2, 1, 0]):
            cases.append((color, filters, rows, palette))
    tap = Tap(len(cases) + 3)
    for color, filters, rows, palette in cases:
        blob = _encode_png(w, h, color, rows, filters, palette)
        try:
            got_w, got_h, got = decode_png(blob)
        except PngError as e:
            tap.result(False, "PNG colour type %d, filters %s round-trip" % (color, filters), [str(e)])
            continue
        want = []
        for row in rows:
            if color == 2:
                want.append(row)
            elif color == 6:
                want.append(bytes(v for x in range(w) for v in
                                  ((row[4 * x + k] * row[4 * x + 3] + 255 * (255 - row[4 * x + 3])) // 255
                                   for k in range(3))))
            elif color == 0:
                want.append(bytes(v for g in row for v in (g, g, g)))
            elif color == 4:
                want.append(bytes(v for x in range(w) for v in
                                  ((row[2 * x] * row[2 * x + 1] + 255 * (255 - row[2 * x + 1])) // 255,) * 3))
            else:
                want.append(bytes(v for i in row for v in palette[i]))
        ok = (got_w, got_h) == (w, h) and got == want
        tap.result(ok, "PNG colour type %d, filters %s round-trip" % (color, filters))
    # corrupt data must be refused, not silently decoded
    blob = bytearray(_encode_png(w, h, 2, cases[0][2], [4]))
    blob[60] ^= 0xFF
    try:
        decode_png(bytes(blob))
        tap.result(False, "a corrupted PNG is refused")
    except PngError as e:
        tap.result(True, "a corrupted PNG is refused (%s)" % e)
    # hue classification: the shades html.c uses are red, greys and white are not
    counts = {(255, 255, 255): 1000, (34, 34, 34): 50, (240, 41, 41): 30, (249, 145, 145): 20,
              (253, 233, 233): 500, (40, 90, 230): 70}
    n, shades = hue_pixels(counts, HUES["red"])
    tap.result((n, shades) == (50, 2), "red shading counted (%d pixels, %d shades)" % (n, shades))
    n, shades = hue_pixels(counts, HUES["blue"])
    tap.result((n, shades) == (70, 1), "blue counted (%d pixels, %d shades)" % (n, shades))
    return 1 if tap.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
