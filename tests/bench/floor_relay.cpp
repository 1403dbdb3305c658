// floor_relay: the "floor" contestant of tests/bench/proxy_bench.sh. NOT a proxy to use.
//   floor_relay LISTEN_HOST:PORT UPSTREAM_HOST:PORT      (SIGTERM / SIGINT: exit)
//
// What it is for: a measured lower bound on the CPU per request of any user-space HTTP/1.1
// keep-alive reverse proxy on epoll on this machine, so the benchmark shows how much of a proxy's
// CPU every proxy must pay (mostly the kernel's loopback TCP work) and whether a target such as
// "0.8 x HAProxy" is reachable at all.
//
// Why it is a floor: it makes only the system calls every such proxy must make. Each client
// connection is paired 1:1, for its life, with one upstream connection opened at accept time;
// bytes are relayed both ways unparsed (wrk does not pipeline, so this is a correct proxy for the
// benchmark). Per request: epoll_wait, then 1 recv + 1 send per direction. No HTTP parsing, routing,
// limits, timers, logging or allocation after accept; no timeouts; on EOF or error it closes both
// sides without flushing. Unfit for anything but the benchmark.
//
// One thread, non-blocking sockets, TCP_NODELAY, a fixed 16 KiB buffer per direction, plain
// recv/send. Edge-triggered by default, registered once for EPOLLIN | EPOLLOUT (no epoll_ctl after
// accept; a recv shorter than the buffer means drained, so no extra recv to reach EAGAIN).
// FLOOR_RELAY_TRIGGER=level: level-triggered (EPOLLOUT only while a send is partial); both make
// the same system calls here (no send is ever partial) and measured the same CPU per request.
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <string>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace {

constexpr std::size_t kBuf = 16 * 1024;
bool edge = true;
int ep = -1;

struct Pair;
struct End {  // one socket of a pair (epoll's data.ptr); idx 0: the client, 1: the upstream
    int fd = -1, idx = 0;
    unsigned mask = 0;  // registered events (level-triggered mode)
    Pair* pair = nullptr;
};
struct Dir {  // dir[i]: bytes read from end[i], not yet sent to end[1 - i]
    std::size_t off = 0, len = 0;
    std::array<char, kBuf> buf;
};
struct Pair {
    End end[2];
    Dir dir[2];
    bool dead = false;
};
std::vector<Pair*> graveyard;  // freed after the epoll_wait batch that may still name them

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "floor_relay: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

sockaddr_storage resolve(const std::string& hp, socklen_t& len) {
    auto colon = hp.rfind(':');
    if (colon == std::string::npos) errno = EINVAL, fail(("bad address " + hp).c_str());
    addrinfo hints{.ai_flags = 0, .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = nullptr;
    if (getaddrinfo(hp.substr(0, colon).c_str(), hp.substr(colon + 1).c_str(), &hints, &res) != 0 || !res)
        errno = EINVAL, fail(("cannot resolve " + hp).c_str());
    sockaddr_storage ss{};
    std::memcpy(&ss, res->ai_addr, res->ai_addrlen);
    len = res->ai_addrlen;
    freeaddrinfo(res);
    return ss;
}

void kill_pair(Pair* p) {
    if (p->dead) return;
    p->dead = true;
    for (End& e : p->end) close(e.fd);  // close() also removes it from the epoll set
    graveyard.push_back(p);
}

// Level-triggered: want EPOLLIN while nothing read from this end is pending, EPOLLOUT while
// something for it is. Edge-triggered: registered once for both, never changed.
void update(End& e) {
    if (edge) return;
    Pair* p = e.pair;
    unsigned want = (p->dir[e.idx].len == 0 ? unsigned{EPOLLIN} : 0u) |
                    (p->dir[1 - e.idx].len != 0 ? unsigned{EPOLLOUT} : 0u);
    if (want == e.mask) return;
    epoll_event ev{want, {.ptr = &e}};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, e.fd, &ev) != 0) fail("epoll_ctl");
    e.mask = want;
}

// Sends what dir[i] holds to end[1 - i]; false if the pair died.
bool flush(Pair* p, int i) {
    Dir& d = p->dir[i];
    while (d.len != 0) {
        ssize_t n = send(p->end[1 - i].fd, d.buf.data() + d.off, d.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;  // also: the upstream still connecting
            kill_pair(p);
            return false;
        }
        d.off += n;
        d.len -= n;
    }
    if (d.len == 0) d.off = 0;
    return true;
}

// Reads from end[i] and relays to end[1 - i] until the socket is drained or the send is partial.
void relay(Pair* p, int i) {
    Dir& d = p->dir[i];
    while (!p->dead && d.len == 0) {
        ssize_t n = recv(p->end[i].fd, d.buf.data(), kBuf, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return kill_pair(p);
        if (n < 0) break;
        d.len = n;
        if (!flush(p, i)) return;
        if (static_cast<std::size_t>(n) < kBuf || !edge) break;  // short read: drained (level: epoll says)
    }
    if (!p->dead) update(p->end[0]), update(p->end[1]);
}

void on_event(End& e, unsigned ev) {
    Pair* p = e.pair;
    int i = e.idx;
    if (p->dead) return;
    if ((ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && p->dir[1 - i].len != 0) {
        if (!flush(p, 1 - i)) return;
        if (p->dir[1 - i].len == 0)
            relay(p, 1 - i);  // resume the side that waited for us (edges lost)
        else if (!edge)
            update(e);
    }
    if (!p->dead && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) && p->dir[i].len == 0) relay(p, i);
}

int tcp_socket(int family) {
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    return fd >= 0 ? fd : (fail("socket"), -1);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) return std::fprintf(stderr, "usage: floor_relay LISTEN_HOST:PORT UPSTREAM_HOST:PORT\n"), 2;
    if (const char* t = std::getenv("FLOOR_RELAY_TRIGGER")) edge = std::string(t) != "level";
    socklen_t llen = 0, ulen = 0;
    sockaddr_storage laddr = resolve(argv[1], llen), uaddr = resolve(argv[2], ulen);
    int one = 1;
    int lfd = tcp_socket(laddr.ss_family);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, reinterpret_cast<sockaddr*>(&laddr), llen) != 0) fail("bind");
    if (listen(lfd, 8192) != 0) fail("listen");

    sigset_t sigs;
    sigemptyset(&sigs), sigaddset(&sigs, SIGTERM), sigaddset(&sigs, SIGINT);
    sigprocmask(SIG_BLOCK, &sigs, nullptr);
    int sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (sfd < 0 || ep < 0) fail("signalfd / epoll_create1");
    int listen_tag = 0, signal_tag = 0;  // their addresses tell the listener and the signalfd apart
    epoll_event lev{EPOLLIN, {.ptr = &listen_tag}}, sev{EPOLLIN, {.ptr = &signal_tag}};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev), epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &sev);

    std::array<epoll_event, 256> evs;
    for (;;) {
        int n = epoll_wait(ep, evs.data(), evs.size(), -1);
        if (n < 0 && errno != EINTR) fail("epoll_wait");
        for (int k = 0; k < n; ++k) {
            void* tag = evs[k].data.ptr;
            if (tag == &signal_tag) return 0;  // SIGTERM / SIGINT
            if (tag != &listen_tag) {
                on_event(*static_cast<End*>(tag), evs[k].events);
                continue;
            }
            for (;;) {  // accept everything pending; pair each client with a new upstream connection
                int cfd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) break;
                int ufd = tcp_socket(uaddr.ss_family);
                if (connect(ufd, reinterpret_cast<sockaddr*>(&uaddr), ulen) != 0 && errno != EINPROGRESS) {
                    close(cfd), close(ufd);
                    continue;
                }
                auto* p = new Pair;
                int fds[2] = {cfd, ufd};
                for (int i = 0; i < 2; ++i) {
                    setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    p->end[i] = End{fds[i], i, EPOLLIN, p};
                    epoll_event ev{edge ? unsigned{EPOLLIN | EPOLLOUT | EPOLLET} : unsigned{EPOLLIN},
                                   {.ptr = &p->end[i]}};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) != 0) fail("epoll_ctl");
                }
            }
        }
        for (Pair* p : graveyard) delete p;
        graveyard.clear();
    }
}
