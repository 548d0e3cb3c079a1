#!/usr/bin/env python3
"""A stand-in for the Hugging Face hub's file downloads, for tests.

Serves ROOT, a folder of repos (ROOT/<org>/<name>/... or ROOT/<name>/...),
the way huggingface.co answers `GET/HEAD /{repo}/resolve/{revision}/{path}`:

* LFS-like files (.safetensors, .bin, or larger than --lfs-threshold bytes)
  answer 302 to /cdn/<sha256> on a second port (another origin, like the
  hub's CDN: clients must not send the token there, and huggingface_hub
  takes the file's metadata from the 302 itself), with X-Repo-Commit,
  X-Linked-Etag: "<sha256>", X-Linked-Size and an ETag that is NOT the
  blob's name (a client must prefer X-Linked-Etag); the CDN answers 200
  with an ETag of its own (an md5, like S3).
* Other files answer 200 with X-Repo-Commit and ETag: "<git blob sha1>".
* Missing files: 404 with X-Error-Code: EntryNotFound (and X-Repo-Commit);
  unknown repos RepositoryNotFound, unknown revisions RevisionNotFound.
* With --token T, /resolve/ requires "Authorization: Bearer T" (401 else).

A repo's commit is a sha1 over its file names and contents; the revisions
it knows are "main" and that commit.  Binds 127.0.0.1 on two free ports
(hub, CDN) and writes the hub's port to --port-file (or prints it as the
first line of stdout).
Serves until killed (with --exit-with-parent, also until the process
that started it is gone, so a crashed test leaves no server behind).
Standard library only: CI has python3, no packages.
"""

import argparse
import hashlib
import http.server
import os
import sys
import threading
import time
import urllib.parse

LFS_SUFFIXES = (".safetensors", ".bin")


def file_sha256(path):
    """The sha256 of a file's bytes, as the hub names LFS blobs."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_blob_sha1(data):
    """git's object id of a blob: what the hub sends as ETag of small files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def repo_files(repo_dir):
    """Repo-relative paths of every file under repo_dir, sorted."""
    out = []
    for dirpath, _, names in os.walk(repo_dir):
        for n in names:
            out.append(os.path.relpath(os.path.join(dirpath, n), repo_dir).replace(os.sep, "/"))
    return sorted(out)


def repo_commit(repo_dir):
    """A stable 40-hex commit id for the repo's current content."""
    h = hashlib.sha1()
    for rel in repo_files(repo_dir):
        h.update(rel.encode() + b"\0" + file_sha256(os.path.join(repo_dir, rel)).encode() + b"\n")
    return h.hexdigest()


class Hub:
    """The served tree and the options, shared by all request handlers."""

    def __init__(self, root, token, lfs_threshold, log_path):
        self.cdn_port = None  # set once the CDN listens
        self.root = os.path.realpath(root)
        self.token = token
        self.lfs_threshold = lfs_threshold
        self.log_path = log_path
        self.lock = threading.Lock()

    def repo_dir(self, repo_id):
        """The folder of repo_id, or None if it is not a served repo."""
        parts = repo_id.split("/")
        if not 1 <= len(parts) <= 2 or any(p in ("", ".", "..") for p in parts):
            return None
        d = os.path.join(self.root, *parts)
        return d if os.path.isdir(d) else None

    def blob_by_sha256(self, sha):
        """The path of a served file whose sha256 is sha, or None."""
        for dirpath, _, names in os.walk(self.root):
            for n in names:
                p = os.path.join(dirpath, n)
                if file_sha256(p) == sha:
                    return p
        return None

    def is_lfs(self, path):
        """Would the hub store this file in LFS (and redirect to a CDN)?"""
        return path.endswith(LFS_SUFFIXES) or os.path.getsize(path) > self.lfs_threshold

    def log(self, line):
        """One line per request, for tests that check what was asked."""
        if self.log_path:
            with self.lock, open(self.log_path, "a") as f:
                f.write(line + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    """GET and HEAD of /{repo}/resolve/{rev}/{path} and /cdn/{sha256}."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stalls
    hub = None  # set by main()

    def log_message(self, fmt, *args):
        pass

    def do_HEAD(self):
        self.route(send_body=False)

    def do_GET(self):
        self.route(send_body=True)

    def route(self, send_body):
        path = urllib.parse.urlsplit(self.path).path
        if self.server.is_cdn:
            status = self.serve_cdn(path[len("/cdn/"):], send_body) if path.startswith("/cdn/") else \
                self.reply(404, {}, b"not found", send_body)
        elif "/resolve/" in path:
            status = self.serve_resolve(path, send_body)
        else:
            status = self.reply(404, {"X-Error-Code": "EntryNotFound"}, b"not found", send_body)
        auth = "auth" if self.headers.get("Authorization") else "noauth"
        self.hub.log("%s %s %d %s" % (self.command, path, status, auth))

    def reply(self, status, headers, body, send_body):
        """Send a complete response; every response has a Content-Length."""
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client stopped reading: fine
        return status

    def authorized(self):
        """With --token, the resolve endpoint wants that bearer token."""
        return self.hub.token is None or self.headers.get("Authorization") == "Bearer " + self.hub.token

    def serve_resolve(self, path, send_body):
        repo_part, _, rest = path.lstrip("/").partition("/resolve/")
        rev_q, _, file_q = rest.partition("/")
        repo_id = urllib.parse.unquote(repo_part)
        revision = urllib.parse.unquote(rev_q)
        filename = urllib.parse.unquote(file_q)
        if not self.authorized():
            return self.reply(401, {"X-Error-Message": "Invalid credentials in Authorization header"},
                              b"unauthorized", send_body)
        repo_dir = self.hub.repo_dir(repo_id)
        if repo_dir is None:
            return self.reply(404, {"X-Error-Code": "RepositoryNotFound",
                                    "X-Error-Message": "Repository not found"}, b"no repo", send_body)
        commit = repo_commit(repo_dir)
        if revision not in ("main", commit):
            return self.reply(404, {"X-Error-Code": "RevisionNotFound",
                                    "X-Error-Message": "Invalid rev id: " + revision}, b"no rev", send_body)
        parts = filename.split("/")
        full = os.path.join(repo_dir, *parts)
        if not filename or any(p in ("", ".", "..") for p in parts) or not os.path.isfile(full):
            return self.reply(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit,
                                    "X-Error-Message": "Entry not found"}, b"no entry", send_body)
        return self.serve_file(full, commit, send_body)

    def serve_file(self, full, commit, send_body):
        """200 with the bytes, or 302 to the CDN for LFS-like files."""
        with open(full, "rb") as f:
            data = f.read()
        if self.hub.is_lfs(full):
            sha = hashlib.sha256(data).hexdigest()
            return self.reply(302, {"Location": "http://127.0.0.1:%d/cdn/%s" % (self.hub.cdn_port, sha),
                                    "X-Repo-Commit": commit,
                                    "X-Linked-Etag": '"%s"' % sha,
                                    "X-Linked-Size": str(len(data)),
                                    "ETag": '"%s"' % git_blob_sha1(b"lfs pointer " + sha.encode())},
                              b"redirecting", send_body)
        return self.reply(200, {"X-Repo-Commit": commit, "ETag": '"%s"' % git_blob_sha1(data),
                                "Content-Type": "application/octet-stream"}, data, send_body)

    def serve_cdn(self, sha, send_body):
        """The CDN: bytes by sha256, with an ETag that is not the sha256."""
        path = self.hub.blob_by_sha256(sha) if len(sha) == 64 else None
        if path is None:
            return self.reply(404, {}, b"no blob", send_body)
        with open(path, "rb") as f:
            data = f.read()
        return self.reply(200, {"ETag": '"%s"' % hashlib.md5(data).hexdigest(),
                                "Content-Type": "application/octet-stream"}, data, send_body)


def write_port(port, port_file):
    """Tell the test where we listen (atomically, so it never reads half)."""
    if port_file is None:
        print(port, flush=True)
        return
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, port_file)


def exit_with_parent():
    """End this process once its parent is gone (we get re-parented)."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def listen(is_cdn):
    """A server on a free port of 127.0.0.1: the hub, or its CDN."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.is_cdn = is_cdn
    return server


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="folder of repos: ROOT/<org>/<name>/<files>")
    ap.add_argument("--token", help="require Authorization: Bearer TOKEN")
    ap.add_argument("--port-file", help="write the chosen port here (else print it)")
    ap.add_argument("--lfs-threshold", type=int, default=10 * 1024 * 1024,
                    help="files larger than this are redirected like LFS files (bytes)")
    ap.add_argument("--log", help="append one line per request to this file")
    ap.add_argument("--exit-with-parent", action="store_true",
                    help="exit when the process that started us ends")
    args = ap.parse_args()
    if not os.path.isdir(args.root):
        sys.exit("hub_server.py: %s is not a folder" % args.root)
    if args.exit_with_parent:
        exit_with_parent()
    Handler.hub = Hub(args.root, args.token, args.lfs_threshold, args.log)
    cdn = listen(is_cdn=True)
    Handler.hub.cdn_port = cdn.server_address[1]
    threading.Thread(target=cdn.serve_forever, daemon=True).start()
    hub = listen(is_cdn=False)
    write_port(hub.server_address[1], args.port_file)
    hub.serve_forever()


if __name__ == "__main__":
    main()
