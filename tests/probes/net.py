# Part of the escape probe script: the files of tests/probes/ are
# concatenated in the order tests/src/escape.rs gives (common.py first).
# -------------------------------------------------------------- network

if MODE == "main":
    @probe("net_only_loopback")
    def _():
        names = [n for _, n in socket.if_nameindex()]
        if names != ["lo"]:
            raise Refused(f"interfaces: {names}")
        return ",".join(names)

    @probe("net_no_nic_device")
    def _():
        found = []
        for d in os.listdir("/sys/bus/virtio/devices") if os.path.isdir("/sys/bus/virtio/devices") else []:
            dev = open(f"/sys/bus/virtio/devices/{d}/device").read().strip()
            if dev == "0x0001":  # virtio-net
                found.append(d)
        for d in os.listdir("/sys/bus/pci/devices") if os.path.isdir("/sys/bus/pci/devices") else []:
            cls = open(f"/sys/bus/pci/devices/{d}/class").read().strip()
            if cls.startswith("0x02"):  # network controller
                found.append(d)
        if found:
            raise Refused(f"network hardware present: {found}")
        return "no virtio-net or PCI network device"

    @probe("net_tcp_public_ip")
    def _():
        return expect_errno(tcp_to(("1.1.1.1", 443)))

    @probe("net_udp_public_ip")
    def _():
        return expect_errno(udp_to(("9.9.9.9", 443)))

    @probe("net_tcp_qemu_gateway")
    def _():
        return expect_errno(tcp_to(("10.0.2.2", 22)))

    @probe("net_tcp_metadata_ip")
    def _():
        return expect_errno(tcp_to(("169.254.169.254", 80)))

    @probe("net_guest_loopback_is_not_host")
    def _():
        # The allowed site listens on the host's 127.0.0.1:PORT; the guest's
        # loopback is its own.
        return expect_errno(tcp_to(("127.0.0.1", PORT)), (errno.ECONNREFUSED,))

    @probe("net_ipv6_tcp")
    def _():
        return expect_errno(tcp_to(("2606:4700:4700::1111", 443, 0, 0), socket.AF_INET6))

    @probe("net_ipv6_udp")
    def _():
        return expect_errno(udp_to(("2606:4700:4700::1111", 53, 0, 0), socket.AF_INET6))

    @probe("net_raw_socket")
    def _():
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20, 0, 0, 64, 17, 0,
                         socket.inet_aton("10.0.0.1"), socket.inet_aton("1.1.1.1"))
        try:
            return "raw socket open; " + expect_errno(lambda: s.sendto(ip, ("1.1.1.1", 0)))
        finally:
            s.close()

    @probe("net_icmp_ping")
    def _():
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        echo = struct.pack("!BBHHH", 8, 0, 0xf7ff, 0, 0)
        try:
            return expect_errno(lambda: s.sendto(echo, ("8.8.8.8", 0)))
        finally:
            s.close()

    @probe("net_packet_socket_lo_only")
    def _():
        # AF_PACKET works as root, but the only device is lo: a frame sent
        # there loops back inside the guest.
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        try:
            for idx, name in socket.if_nameindex():
                if name != "lo":
                    raise Refused(f"packet socket could use {name}")
            return expect_errno(lambda: s.bind(("eth0", 0)), (errno.ENODEV,))
        finally:
            s.close()

    @probe("net_bring_up_interface")
    def _():
        # Creating a virtual interface (dummy/veth) may or may not work; it
        # never adds hardware, so there is still nothing to carry packets
        # out. Checked: every interface afterwards is virtual.
        tries = []
        for cmd in (["ip", "link", "add", "probe0", "type", "dummy"],
                    ["ip", "link", "set", "lo", "up"],
                    ["ip", "link", "add", "probe1", "type", "veth", "peer", "name", "probe2"]):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=1.5)
            tries.append(f"{cmd[3]}:{r.returncode}")
        physical = [n for n in os.listdir("/sys/class/net")
                    if os.path.exists(f"/sys/class/net/{n}/device")]
        for n in ("probe0", "probe1"):
            subprocess.run(["ip", "link", "del", n], capture_output=True, timeout=1.5)
        if physical:
            raise Refused(f"hardware interfaces: {physical}")
        return " ".join(tries) + "; no hardware interface; " + expect_errno(tcp_to(("1.1.1.1", 80)))

    VSOCK_REFUSED = (errno.ECONNRESET, errno.ECONNREFUSED, errno.ENODEV,
                     errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL)

    def vsock_connect(cid, port, wait=1.5):
        """Connect over vsock: the refusal errno. Raises Refused if a
        connection is made, or if the request got no answer within `wait`
        (a drop, not a refusal: the unpatched vhost-device-vsock 0.3 drops
        requests for unserved ports and unknown CIDs, and the guest then
        waits out its 2 s connect timeout; images/vsock-daemon.sh installs
        the build that answers with a reset)."""
        s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        s.settimeout(wait)
        try:
            s.connect((cid, port))
            if s.recv(1) == b"":
                return "accepted then closed at once"
            raise Refused(f"connected to CID {cid} port {port}")
        except socket.timeout:
            raise Refused(f"CID {cid} port {port}: no answer within {wait} s (dropped, not refused)")
        except OSError as e:
            if e.errno in VSOCK_REFUSED:
                return errno.errorcode[e.errno]
            raise Refused(f"unexpected {e!r}")
        finally:
            s.close()

    def probe_hello(channel):
        # Hello { major, minor 0, role Guest, channel, software "probe" };
        # the runner passes the protocol's major (PROBE_PROTOCOL_MAJOR).
        soft = b"probe"
        major = int(os.environ.get("PROBE_PROTOCOL_MAJOR", "3"))
        return bytes([major, 0, 0, channel, len(soft)]) + soft

    for port in (22, 1024, 6000, 6005, 8080):
        probe(f"net_vsock_host_port_{port}")(lambda port=port: vsock_connect(2, port))

    for cid, label in ((0, "hypervisor"), (1, "local"), (3, "self"), (4, "other"), (0xFFFFFFFF - 1, "high")):
        probe(f"net_vsock_cid_{label}")(lambda cid=cid: vsock_connect(cid, 6003))

    def vsock_garbage(port, trailing):
        # A well-formed frame that is no hello ("GET /"), optionally
        # followed by more bytes the host never reads.
        s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        s.settimeout(1.8)
        try:
            s.connect((2, port))
            try:
                s.sendall(b"\x00\x00\x00\x05GET /" + (b"\r\n" + b"\xff" * 64 if trailing else b""))
            except (BrokenPipeError, ConnectionResetError):
                # Closed before we finished writing: closed at once.
                return "closed while sending"
            data = b""
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except ConnectionResetError:
                pass
            except socket.timeout:
                raise Refused(f"not closed within 1.8 s ({len(data)} bytes read)")
            if b"HTTP/1.1 200" in data:
                raise Refused("garbage got an HTTP answer")
            return f"closed after {len(data)} bytes"
        finally:
            s.close()

    for port in (6001, 6002, 6003, 6004):
        probe(f"net_vsock_garbage_{port}")(lambda port=port: vsock_garbage(port, False))
    probe("net_vsock_garbage_trailing_bytes")(lambda: vsock_garbage(6002, True))

    def dial_with_hello(port, channel):
        # A vsock connection to host `port` whose hello was accepted.
        hello = probe_hello(channel)
        s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        s.settimeout(1.8)
        try:
            s.connect((2, port))
            s.sendall(struct.pack(">I", len(hello)) + hello)
            n = struct.unpack(">I", recv_exact(s, 4))[0]
            reply = recv_exact(s, n)
            if reply[:1] != b"\x00":
                raise Refused(f"hello refused: {reply!r}")
            return s
        except BaseException:
            s.close()
            raise

    @probe("net_vsock_session_second_attach")
    def _():
        # The init attached the agent's session at boot; a second attach
        # (the agent posing as the init) is dropped after the hello, and
        # gets nothing of the agent's session.
        s = dial_with_hello(6004, 3)
        try:
            data = b""
            try:
                s.sendall(b"\x00\x00\x00\x02\x00\x00")  # Attach { session: 0 }
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except (ConnectionResetError, BrokenPipeError):
                pass
            except socket.timeout:
                raise Refused("a second session connection was left open")
            if data:
                raise Refused(f"a second session got {data[:40]!r}")
            return "dropped after the hello"
        finally:
            s.close()

    @probe("net_vsock_egress_direct")
    def _():
        # Skip the guest's forwarder: hello on 6003 ourselves, then CONNECT
        # to a denied host. The channel is the proxy: 403.
        s = dial_with_hello(6003, 2)
        try:
            s.sendall(b"CONNECT evil.example.com:443 HTTP/1.1\r\nHost: evil.example.com:443\r\n\r\n")
            return expect_403(read_reply(s), "direct egress CONNECT")
        finally:
            s.close()


