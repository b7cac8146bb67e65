#!/usr/bin/python3
"""Writes into an rbd image as a guest would, through librbd (python3-rbd, which ceph-common
brings): the tests' seeded writes, zero writes and whole-object discards, in place, so that the
image keeps its snapshots (an `rbd import` would make a new image).

    rbd_client.py CONF POOL IMAGE OPS DATA

OPS is JSON: [[offset, length, kind], ...], kind "data" (the next `length` bytes of the file
DATA), "zero" (zeros written) or "discard" (rbd_discard).
"""
import json
import sys

import rados
import rbd

conf, pool, image, ops, data = sys.argv[1:6]
with open(ops) as f:
    todo = json.load(f)
with rados.Rados(conffile=conf) as cluster, cluster.open_ioctx(pool) as ioctx, \
        rbd.Image(ioctx, image) as img, open(data, "rb") as src:
    for offset, length, kind in todo:
        if kind == "data":
            buf = src.read(length)
            assert len(buf) == length, "DATA is shorter than OPS says"
            img.write(buf, offset)
        elif kind == "zero":
            img.write(b"\0" * length, offset)
        elif kind == "discard":
            img.discard(offset, length)
        else:
            raise SystemExit(f"unknown op {kind}")
    img.flush()
