# Part of the escape probe script: the files of tests/probes/ are
# concatenated in the order tests/src/escape.rs gives (common.py first).
# ------------------------------------------------------------ workspaces
# The main run shares two host directories: /work (writable) and /ro
# (read-only). Beside them on the host, outside both, is a directory whose
# file holds OUTSIDE_MARK; the host planted /work/hostlink -> that
# directory (an absolute host path) and /work/uplink -> ../outside. Nothing
# here may read the mark or write to /ro, whatever the guest root does.

OUTSIDE_MARK = os.environ.get("PROBE_OUTSIDE_MARK", "")
OUTSIDE_INO = int(os.environ.get("PROBE_OUTSIDE_INO", "0"))


def read_or_errno(path):
    try:
        with open(path, "rb") as f:
            return f.read(4096)
    except OSError as e:
        return e.errno


def not_the_mark(what, got):
    if isinstance(got, bytes) and OUTSIDE_MARK and OUTSIDE_MARK.encode() in got:
        raise Refused(f"{what} read the host file outside the workspace")
    return f"{what}: {errno.errorcode.get(got, got) if isinstance(got, int) else 'other data'}"


if MODE == "main" and os.path.isdir("/work"):
    @probe("ws_baseline_read_write")
    def _():
        # Positive control: the workspace works, so refusals below are real.
        with open("/work/probe-wrote.txt", "w") as f:
            f.write("from the guest\n")
        if not os.path.isfile("/work/in.txt"):
            raise Refused("the host's /work/in.txt is not visible")
        return "read and wrote /work"

    @probe("ws_host_symlink_resolves_in_guest")
    def _():
        return not_the_mark("hostlink", read_or_errno("/work/hostlink/secret.txt"))

    @probe("ws_relative_symlink_stays_in_guest")
    def _():
        return not_the_mark("uplink", read_or_errno("/work/uplink/secret.txt"))

    @probe("ws_dotdot_is_the_guest_root")
    def _():
        names = os.listdir("/work/..")
        if "outside" in names:
            raise Refused(f"/work/.. lists the host's parent: {names}")
        return not_the_mark("/work/../outside", read_or_errno("/work/../outside/secret.txt"))

    @probe("ws_guest_symlink_to_root")
    def _():
        try:
            os.symlink("/", "/work/rootlink")
        except FileExistsError:
            pass
        got = os.listdir("/work/rootlink")
        if "outside" in got:
            raise Refused("a symlink to / reached the host's tree")
        return "a symlink to / is the guest's /"

    @probe("ws_hardlink_across_mounts")
    def _():
        return expect_errno(lambda: os.link("/etc/passwd", "/work/passwd-link"), (errno.EXDEV,))

    @probe("ws_open_by_handle")
    def _():
        # The guest may craft file handles for the workspace's file system;
        # none may open a host inode outside it (the host file's inode
        # number is known to the probe: the strongest guess there is).
        libc = ctypes.CDLL(None, use_errno=True)
        AT_FDCWD = -100
        fd_dir = os.open("/work", os.O_RDONLY | os.O_DIRECTORY)
        opened = 0
        try:
            buf = ctypes.create_string_buffer(8 + 128)
            struct.pack_into("Ii", buf, 0, 128, 0)
            mnt = ctypes.c_int(0)
            r = libc.name_to_handle_at(AT_FDCWD, b"/work/in.txt", buf, ctypes.byref(mnt), 0)
            if r != 0:
                first = f"name_to_handle_at: {errno.errorcode.get(ctypes.get_errno())}"
                htype = 0x81
            else:
                size, htype = struct.unpack_from("Ii", buf, 0)
                first = f"handle type {htype:#x} size {size}"
            for ino in list(range(1, 64)) + [OUTSIDE_INO]:
                for gen in (0, 1):
                    # FUSE's layout: node id high and low words, generation.
                    h = ctypes.create_string_buffer(8 + 12)
                    struct.pack_into("IiIII", h, 0, 12, htype, ino >> 32, ino & 0xFFFFFFFF, gen)
                    fd = libc.open_by_handle_at(fd_dir, h, os.O_RDONLY)
                    if fd >= 0:
                        opened += 1
                        try:
                            if os.path.isdir(f"/proc/self/fd/{fd}"):
                                names = os.listdir(f"/proc/self/fd/{fd}")
                                if "outside" in names or "secret.txt" in names:
                                    raise Refused(f"handle {ino} opened a host directory: {names}")
                                data = b""
                            else:
                                data = os.read(fd, 4096)
                        finally:
                            os.close(fd)
                        not_the_mark(f"handle ino {ino}", data)
        finally:
            os.close(fd_dir)
        return f"{first}; {opened} crafted handles opened, none outside"

    @probe("ws_readonly_refuses_writes")
    def _():
        return expect_errno(lambda: open("/ro/new.txt", "w"), (errno.EROFS,))

    @probe("ws_readonly_after_remount_rw")
    def _():
        # The guest is root: it may remount read-write. The host's daemon
        # still refuses the write.
        r = subprocess.run(["mount", "-o", "remount,rw", "/ro"], capture_output=True, timeout=5)
        res = expect_errno(lambda: open("/ro/after-remount.txt", "w"), (errno.EROFS, errno.EACCES, errno.EPERM))
        return f"remount rc={r.returncode}; {res}"

    @probe("ws_mount_host_tag_again")
    def _():
        # Mounting the workspace's tag a second time gives the same tree,
        # nothing more (no host path is reachable by a mount option).
        os.makedirs("/mnt/again", exist_ok=True)
        r = subprocess.run(["mount", "-t", "virtiofs", "ws0", "/mnt/again"], capture_output=True, timeout=5)
        if r.returncode != 0:
            return f"refused: {r.stderr.decode(errors='replace').strip()}"
        try:
            names = sorted(os.listdir("/mnt/again"))
            if "outside" in names or "ws" in names:
                raise Refused(f"second mount shows the host's parent: {names}")
            return not_the_mark("second mount", read_or_errno("/mnt/again/hostlink/secret.txt"))
        finally:
            subprocess.run(["umount", "/mnt/again"], capture_output=True, timeout=5)
