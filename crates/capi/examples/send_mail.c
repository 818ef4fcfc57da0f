/* Sends one mail through postline's C API over POSIX sockets: the shape of a NetX Duo or
 * embOS/IP program, with the callbacks a device's stack would provide.
 *
 *   send_mail HOST PORT FROM TO [TO...]
 *
 * POSTLINE_USER / POSTLINE_PASSWORD in the environment turn on AUTH (over this clear-text
 * connection, so allow_plaintext_auth is set); POSTLINE_SUBJECT replaces the subject, and
 * POSTLINE_NO_CLOCK=1 leaves out the time of day (no Date or Message-ID). Built with
 * -DPOSTLINE_TLS against a library with the `tls` feature: POSTLINE_TLS=starttls or implicit
 * turns on TLS, the server's certificate checked against the CA in the DER file POSTLINE_CA
 * and the name POSTLINE_SERVER_NAME (AUTH then needs no clear-text allowance). Prints the
 * result, the reply and each recipient's code; exits 0 when the mail was delivered (to some
 * or all). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#ifdef POSTLINE_TLS
#include <sys/random.h>
#endif

#include "postline.h"

struct conn {
    const char *host;
    int port;
    int fd;
};

static int32_t do_connect(void *ctx) {
    struct conn *c = ctx;
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)c->port);
    if (inet_pton(AF_INET, c->host, &sa.sin_addr) != 1) return -2;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) return -2;
    /* Short receive and send timeouts: the driver checks its own deadlines between calls. */
    struct timeval tv = {0, 200 * 1000};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        /* A failed connect releases its socket: close is called only after a successful one. */
        close(c->fd);
        c->fd = -1;
        return -2;
    }
    return 0;
}

static int32_t do_send(void *ctx, const uint8_t *data, size_t len) {
    struct conn *c = ctx;
    ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
    if (n > 0) return (int32_t)n;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return POSTLINE_IO_AGAIN;
    return -2;
}

static int32_t do_recv(void *ctx, uint8_t *buf, size_t len) {
    struct conn *c = ctx;
    ssize_t n = recv(c->fd, buf, len, 0);
    if (n >= 0) return (int32_t)n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return POSTLINE_IO_AGAIN;
    return -2;
}

static void do_close(void *ctx) {
    struct conn *c = ctx;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

static uint64_t now_ms(void *ctx) {
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int64_t unix_time(void *ctx) {
    (void)ctx;
    return (int64_t)time(NULL);
}

#ifdef POSTLINE_TLS
/* The kernel's CSPRNG; nonzero when it fails (the mail then ends with ERR_TLS, nothing sent
 * under TLS). For the tests, POSTLINE_RANDOM_FAIL=1 makes every call fail, and
 * POSTLINE_RANDOM_FAIL=later every call after the first (the library's check before it
 * connects passes, the handshake's draw fails). */
static int32_t random_bytes(void *ctx, uint8_t *buf, size_t len) {
    static unsigned long calls;
    const char *fail = getenv("POSTLINE_RANDOM_FAIL");
    (void)ctx;
    calls++;
    if (fail != NULL && (strcmp(fail, "later") != 0 || calls > 1)) return -1;
    while (len > 0) {
        ssize_t n = getrandom(buf, len, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* TLS as the environment says; 0 when not asked for or set up, 1 on a mistake. */
static uint8_t read_record[16640], write_record[16640], ca_der[8192];
static postline_tls tls;

static int set_up_tls(postline_client *client) {
    const char *mode = getenv("POSTLINE_TLS");
    if (mode == NULL) return 0;
    const char *path = getenv("POSTLINE_CA");
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (f == NULL) {
        fprintf(stderr, "POSTLINE_CA: cannot read the CA (DER) file\n");
        return 1;
    }
    size_t ca_len = fread(ca_der, 1, sizeof ca_der, f);
    int bad = ferror(f) || ca_len == 0 || (!feof(f) && fgetc(f) != EOF);
    fclose(f);
    if (bad) {
        fprintf(stderr, "POSTLINE_CA: empty, unreadable or over %zu bytes\n", sizeof ca_der);
        return 1;
    }
    tls.mode = strcmp(mode, "implicit") == 0 ? POSTLINE_TLS_IMPLICIT : POSTLINE_TLS_STARTTLS;
    tls.server_name = getenv("POSTLINE_SERVER_NAME");
    tls.ca_der = ca_der;
    tls.ca_der_len = ca_len;
    tls.read_record = read_record;
    tls.read_record_len = sizeof read_record;
    tls.write_record = write_record;
    tls.write_record_len = sizeof write_record;
    tls.random = random_bytes;
    if (postline_client_tls(client, &tls) != POSTLINE_RESULT_OK) {
        fprintf(stderr, "postline_client_tls refused the settings\n");
        return 1;
    }
    return 0;
}
#endif

/* Stack painting: fill a region below main's frame with a pattern, run the mail, and find how
 * deep the pattern was overwritten (POSTLINE_STACK_REPORT=1 prints it; bench/embedded-budget
 * reads it). The two helpers' arrays sit where postline_send_mail's frames went. */
#define PAINT_BYTES (256 * 1024)
#define PAINT 0xA5

/* Painting writes a frame nobody reads and reads one nobody wrote: that is the point. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

__attribute__((noinline)) static void paint_stack(void) {
    volatile uint8_t area[PAINT_BYTES];
    for (size_t i = 0; i < PAINT_BYTES; i++) area[i] = PAINT;
}

__attribute__((noinline)) static size_t painted_depth(void) {
    volatile uint8_t area[PAINT_BYTES];
    size_t untouched = 0;
    while (untouched < PAINT_BYTES && area[untouched] == PAINT) untouched++;
    return PAINT_BYTES - untouched;
}
#pragma GCC diagnostic pop

/* The client lives in static memory: nothing is allocated. */
static postline_client client_memory;

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST PORT FROM TO [TO...]\n", argv[0]);
        return 64;
    }
    struct conn conn = {argv[1], atoi(argv[2]), -1};
    postline_io io = {&conn, do_connect, do_send, do_recv, do_close, now_ms, unix_time};
    if (getenv("POSTLINE_NO_CLOCK") != NULL) io.unix_time = NULL;
    const char *subject = getenv("POSTLINE_SUBJECT");
    if (subject == NULL) subject = "Sensor 4: temperature high";
    /* Over TLS, AUTH needs no clear-text allowance: leave it off there. */
    uint8_t plaintext_auth = getenv("POSTLINE_TLS") == NULL;
    postline_config config = {"device.example", getenv("POSTLINE_USER"),
                              getenv("POSTLINE_PASSWORD"), plaintext_auth, 10000};
    postline_client *client =
        postline_client_create(&client_memory, sizeof client_memory, &config, &io);
    if (!client) {
        fprintf(stderr, "postline_client_create failed\n");
        return 70;
    }
#ifdef POSTLINE_TLS
    if (set_up_tls(client) != 0) return 70;
#else
    /* TLS asked for and not built in: never send in clear text instead. */
    if (getenv("POSTLINE_TLS") != NULL) {
        fprintf(stderr, "POSTLINE_TLS is set, but this program was built without TLS\n");
        return 70;
    }
#endif
    const char *const *to = (const char *const *)&argv[4];
    size_t to_count = (size_t)(argc - 4);
    uint16_t codes[to_count];
    const char *body = "Temperature 71.5 C at sensor 4.\n.Dot line kept.\n";
    postline_status status;
    int report_stack = getenv("POSTLINE_STACK_REPORT") != NULL;
    if (report_stack) paint_stack();
    postline_result r =
        postline_send_mail(client, argv[3], to, to_count, POSTLINE_PRIORITY_HIGH,
                           subject, (const uint8_t *)body, strlen(body),
                           codes, &status);
    if (report_stack) printf("stack %zu\n", painted_depth());
    printf("result %d reply %u %s\n", (int)r, status.code, status.text);
    for (size_t i = 0; i < to_count; i++) printf("rcpt %s %u\n", to[i], codes[i]);
    postline_client_delete(client);
    return (r == POSTLINE_RESULT_OK || r == POSTLINE_RESULT_PARTIAL) ? 0 : 1;
}
