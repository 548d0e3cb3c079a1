#!/usr/bin/env python3
"""Rewrite the <<<grid, block>>> launches of a .cu file for the CUDA emulation (cuda_runtime.h):

    name<<<G, B>>>(args);   ->   emu_launch(G, B, [&]() { name(args); });

usage: launches.py IN.cu OUT.cpp
"""
import re
import sys


def split_top(s, sep=","):
    """Split s at the separators outside parentheses, brackets and braces."""
    parts, depth, cur = [], 0, ""
    for ch in s:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def rewrite(src):
    out, pos = [], 0
    for m in re.finditer(r"([A-Za-z_][A-Za-z_0-9]*)\s*<<<", src):
        if m.start() < pos:
            continue
        end = src.index(">>>", m.end())
        config = split_top(src[m.end():end])
        if len(config) != 2:
            sys.exit(f"launches.py: launch of {m.group(1)} with {len(config)} configuration values")
        i, depth = end + 3, 0
        while src[i].isspace():
            i += 1
        if src[i] != "(":
            sys.exit(f"launches.py: no arguments after the launch of {m.group(1)}")
        start = i
        for i in range(start, len(src)):
            depth += src[i] == "("
            depth -= src[i] == ")"
            if depth == 0:
                break
        args = src[start:i + 1]
        out.append(src[pos:m.start()])
        out.append(f"emu_launch({config[0].strip()}, {config[1].strip()}, [&]() {{ {m.group(1)}{args}; }})")
        pos = i + 1
    out.append(src[pos:])
    return "".join(out)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        text = f.read()
    with open(sys.argv[2], "w") as f:
        f.write(f'#line 1 "{sys.argv[1]}"\n' + rewrite(text))
