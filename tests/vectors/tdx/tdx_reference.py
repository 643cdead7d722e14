#!/usr/bin/env python3
"""Independent reference for mpk's TDX measurements (MRTD, RTMR1, RTMR2).

Written from ../shared/reference/measurement.md ("Intel TDX") and the
behaviour of the Linux/x86 boot protocol as QEMU applies it, with only the
Python standard library. It shares no code with the Rust implementation
(driver/mpk-measure/src/tdx/); see PROVENANCE.md.

Single run:
    tdx_reference.py --firmware F --kernel K --initrd I --append S
                     [--memory-mb N] [--mrtd-order single|two-pass]
prints {"mrtd": ..., "rtmr1": ..., "rtmr2": ...} (mrtd only with --firmware).
Batch (one process for many cases): `tdx_reference.py --batch` reads a JSON
list of objects with the same keys (firmware, kernel, initrd, append,
memory_mb, mrtd_order; paths as strings) and prints one JSON line per case,
or "ERR <message>".
"""
import argparse
import hashlib
import json
import struct
import sys
import uuid

PAGE = 4096
FOOTER_GUID = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d")
TDX_METADATA_GUID = uuid.UUID("e47a6535-984a-4798-865e-4685a7bf8ec2")
DEFAULT_MEMORY = 0xB0000000  # the reference tool's runtime-only value
ACPI_DATA_SIZE = 0x28000


def footer_entries(fw):
    """{uuid: data} of the OVMF GUIDed footer table."""
    end = len(fw) - 32
    if uuid.UUID(bytes_le=fw[end - 16:end]) != FOOTER_GUID:
        raise ValueError("no OVMF footer table")
    (size,) = struct.unpack_from("<H", fw, end - 18)
    table = fw[end - 18 - (size - 18):end - 18]
    out = {}
    pos = len(table)
    while pos >= 18:
        g = uuid.UUID(bytes_le=table[pos - 16:pos])
        (n,) = struct.unpack_from("<H", table, pos - 18)
        if n < 18 or n > pos:
            raise ValueError("bad footer entry %s" % g)
        out[g] = table[pos - n:pos - 18]
        pos -= n
    return out


def tdvf_sections(fw):
    entries = footer_entries(fw)
    if TDX_METADATA_GUID not in entries:
        raise ValueError("no TDX metadata footer entry")
    data = entries[TDX_METADATA_GUID]
    (off,) = struct.unpack_from("<I", data, len(data) - 4)
    at = len(fw) - off
    sig, length, version, n = struct.unpack_from("<4sIII", fw, at)
    if sig != b"TDVF" or version != 1:
        raise ValueError("bad TDVF descriptor")
    if 16 + 32 * n > length:
        raise ValueError("TDVF descriptor too short")
    secs = []
    for i in range(n):
        secs.append(struct.unpack_from("<IIQQII", fw, at + 16 + 32 * i))
    return secs


def mrtd(fw, order):
    h = hashlib.sha384()

    def add(gpa):
        h.update(b"MEM.PAGE.ADD".ljust(16, b"\0") + struct.pack("<Q", gpa) + bytes(104))

    def extend(gpa, sec_off, raw, page_index):
        for c in range(16):
            h.update(b"MR.EXTEND".ljust(16, b"\0") + struct.pack("<Q", gpa + c * 256) + bytes(104))
            rel = page_index * PAGE + c * 256
            chunk = fw[sec_off + rel:sec_off + min(rel + 256, raw)] if rel < raw else b""
            h.update(chunk.ljust(256, b"\0"))

    for (data_off, raw, addr, mem_size, typ, attr) in tdvf_sections(fw):
        if addr % PAGE or mem_size % PAGE or raw > mem_size or data_off + raw > len(fw):
            raise ValueError("bad TDVF section")
        pages = mem_size // PAGE
        do_add = not (attr & 2)
        do_ext = bool(attr & 1)
        if order == "single":
            for p in range(pages):
                if do_add:
                    add(addr + p * PAGE)
                if do_ext:
                    extend(addr + p * PAGE, data_off, raw, p)
        else:
            if do_add:
                for p in range(pages):
                    add(addr + p * PAGE)
            if do_ext:
                for p in range(pages):
                    extend(addr + p * PAGE, data_off, raw, p)
    return h.hexdigest()


def qemu_patch(kernel, initrd_size, mem):
    k = bytearray(kernel)
    if len(k) < 0x1000:
        raise ValueError("kernel too short")
    if k[0x202:0x206] != b"HdrS":
        raise ValueError("not a bzImage")
    proto = int.from_bytes(k[0x206:0x208], "little")
    low = proto < 0x200 or not (k[0x211] & 1)
    real, cmd = (0x90000, 0x9A000) if low else (0x10000, 0x20000)
    if proto >= 0x200:
        k[0x210] = 0xB0
    if proto >= 0x201:
        k[0x211] |= 0x80
        k[0x224:0x228] = (cmd - real - 0x200).to_bytes(4, "little")
    if proto >= 0x202:
        k[0x228:0x22C] = cmd.to_bytes(4, "little")
    else:
        k[0x20:0x22] = (0xA33F).to_bytes(2, "little")
        k[0x22:0x24] = (cmd - real).to_bytes(2, "little")
    if initrd_size:
        if proto < 0x200:
            raise ValueError("kernel too old for an initrd")
        if proto >= 0x20C:
            imax = 0xFFFFFFFF if int.from_bytes(k[0x236:0x238], "little") & 0x40 else 0x37FFFFFF
        elif proto >= 0x203:
            imax = int.from_bytes(k[0x22C:0x230], "little") or 0x37FFFFFF
        else:
            imax = 0x37FFFFFF
        below4g = min(mem, 0xB0000000 if mem < 0xB0000000 else 0x80000000)
        if imax >= below4g - ACPI_DATA_SIZE:
            imax = below4g - ACPI_DATA_SIZE - 1
        if initrd_size >= imax:
            raise ValueError("initrd too large")
        k[0x218:0x21C] = ((imax - initrd_size) & ~0xFFF).to_bytes(4, "little")
        k[0x21C:0x220] = initrd_size.to_bytes(4, "little")
    return bytes(k)


def authenticode_sha384(pe):
    u16 = lambda o: int.from_bytes(pe[o:o + 2], "little")
    u32 = lambda o: int.from_bytes(pe[o:o + 4], "little")
    pe_off = u32(0x3C)
    if pe[pe_off:pe_off + 4] != b"PE\0\0":
        raise ValueError("no PE signature")
    coff = pe_off + 4
    nsec, opt_size = u16(coff + 2), u16(coff + 16)
    opt = coff + 20
    plus = u16(opt) == 0x20B
    csum = opt + 64
    certdir = opt + (112 if plus else 96) + 4 * 8
    hdrs = u32(opt + 60)
    h = hashlib.sha384()
    h.update(pe[:csum])
    h.update(pe[csum + 4:certdir])
    h.update(pe[certdir + 8:hdrs])
    done = hdrs
    secs = []
    for i in range(nsec):
        s = opt + opt_size + 40 * i
        size, ptr = u32(s + 16), u32(s + 20)
        if size:
            secs.append((ptr, size))
    for ptr, size in sorted(secs):
        h.update(pe[ptr:ptr + size])
        done += size
    cert_addr, cert_size = u32(certdir), u32(certdir + 4)
    if cert_addr and cert_size and len(pe) > done and len(pe) - done > cert_size:
        h.update(pe[done:len(pe) - cert_size])
    if len(pe) % 8:
        h.update(bytes(8 - len(pe) % 8))
    return h.digest()


def rtmr(events):
    r = bytes(48)
    for e in events:
        r = hashlib.sha384(r + e).digest()
    return r.hex()


def sha384(b):
    return hashlib.sha384(b).digest()


def measure(firmware, kernel, initrd, append, memory_mb=None, mrtd_order="single"):
    mem = DEFAULT_MEMORY if memory_mb is None else memory_mb * 1024 * 1024
    with open(kernel, "rb") as f:
        k = f.read()
    with open(initrd, "rb") as f:
        i = f.read()
    out = {}
    if firmware is not None:
        with open(firmware, "rb") as f:
            out["mrtd"] = mrtd(f.read(), mrtd_order)
    out["rtmr1"] = rtmr([
        authenticode_sha384(qemu_patch(k, len(i), mem)),
        sha384(b"Calling EFI Application from Boot Option"),
        sha384(bytes(4)),
        sha384(b"Exit Boot Services Invocation"),
        sha384(b"Exit Boot Services Returned with Success"),
    ])
    cmd = (append + " initrd=initrd").encode("utf-16-le") + b"\0\0"
    out["rtmr2"] = rtmr([sha384(cmd), sha384(i)])
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", action="store_true")
    p.add_argument("--firmware")
    p.add_argument("--kernel")
    p.add_argument("--initrd")
    p.add_argument("--append", default="")
    p.add_argument("--memory-mb", type=int)
    p.add_argument("--mrtd-order", choices=["single", "two-pass"], default="single")
    a = p.parse_args()
    if a.batch:
        for c in json.load(sys.stdin):
            try:
                r = measure(c.get("firmware"), c["kernel"], c["initrd"], c["append"],
                            c.get("memory_mb"), c.get("mrtd_order", "single"))
                print(json.dumps(r, sort_keys=True))
            except Exception as e:  # one line per case, whatever happens
                print("ERR", repr(e))
        return
    print(json.dumps(measure(a.firmware, a.kernel, a.initrd, a.append, a.memory_mb,
                             a.mrtd_order), sort_keys=True))


if __name__ == "__main__":
    main()
