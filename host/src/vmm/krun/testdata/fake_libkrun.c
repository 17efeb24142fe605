/* A fake libkrun for the FFI boundary test (host/src/vmm/krun/tests_ffi.rs).
 * Exports libkrun.h's functions, appends one line per call to LOG_PATH and
 * returns 0, or -EIO from the function named FAIL_AT. krun_start_enter
 * returns START_RC. Built at test time with a generated config header that
 * defines LOG_PATH, FAIL_AT, START_RC and the NO_* switches that leave a
 * function out. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static void logline(const char *fmt, ...) {
    FILE *f = fopen(LOG_PATH, "a");
    if (!f)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fclose(f);
}

static int32_t rc(const char *fn) { return strcmp(fn, FAIL_AT) == 0 ? -EIO : 0; }

static void array(char *out, size_t cap, const char *const a[]) {
    if (!a) {
        snprintf(out, cap, "NULL");
        return;
    }
    size_t n = 0;
    n += snprintf(out + n, cap - n, "[");
    for (size_t i = 0; a[i] && n < cap; i++)
        n += snprintf(out + n, cap - n, "%s%s", i ? "," : "", a[i]);
    if (n < cap)
        snprintf(out + n, cap - n, "]");
}

int32_t krun_create_ctx(void) {
    logline("krun_create_ctx");
    return strcmp("krun_create_ctx", FAIL_AT) == 0 ? -ENOMEM : 7;
}
int32_t krun_free_ctx(uint32_t ctx) {
    logline("krun_free_ctx ctx=%u", ctx);
    return 0;
}
int32_t krun_set_log_level(uint32_t level) {
    logline("krun_set_log_level level=%u", level);
    return rc("krun_set_log_level");
}
int32_t krun_set_vm_config(uint32_t ctx, uint8_t vcpus, uint32_t ram) {
    logline("krun_set_vm_config ctx=%u vcpus=%u ram_mib=%u", ctx, vcpus, ram);
    return rc("krun_set_vm_config");
}
int32_t krun_set_root(uint32_t ctx, const char *path) {
    logline("krun_set_root ctx=%u path=%s", ctx, path);
    return rc("krun_set_root");
}
int32_t krun_set_kernel(uint32_t ctx, const char *k, uint32_t fmt, const char *initrd,
                        const char *cmdline) {
    logline("krun_set_kernel ctx=%u path=%s format=%u initramfs=%s cmdline=%s", ctx, k, fmt,
            initrd ? initrd : "NULL", cmdline);
    return rc("krun_set_kernel");
}
#ifndef NO_DISABLE_IMPLICIT_VSOCK
int32_t krun_disable_implicit_vsock(uint32_t ctx) {
    logline("krun_disable_implicit_vsock ctx=%u", ctx);
    return rc("krun_disable_implicit_vsock");
}
#endif
int32_t krun_add_vsock(uint32_t ctx, uint32_t tsi) {
    logline("krun_add_vsock ctx=%u tsi_features=%u", ctx, tsi);
    return rc("krun_add_vsock");
}
int32_t krun_add_vsock_port(uint32_t ctx, uint32_t port, const char *path) {
    logline("krun_add_vsock_port ctx=%u port=%u path=%s", ctx, port, path);
    return rc("krun_add_vsock_port");
}
int32_t krun_add_vsock_port2(uint32_t ctx, uint32_t port, const char *path, bool listen) {
    logline("krun_add_vsock_port2 ctx=%u port=%u path=%s listen=%d", ctx, port, path, listen);
    return rc("krun_add_vsock_port2");
}
#ifndef NO_CONSOLE_OUTPUT
int32_t krun_set_console_output(uint32_t ctx, const char *path) {
    logline("krun_set_console_output ctx=%u path=%s", ctx, path);
    return rc("krun_set_console_output");
}
#endif
int32_t krun_set_exec(uint32_t ctx, const char *exec, const char *const argv[],
                      const char *const envp[]) {
    char a[2048], e[2048];
    array(a, sizeof a, argv);
    array(e, sizeof e, envp);
    logline("krun_set_exec ctx=%u exec=%s argv=%s envp=%s", ctx, exec, a, e);
    return rc("krun_set_exec");
}
int32_t krun_set_env(uint32_t ctx, const char *const envp[]) {
    char e[2048];
    array(e, sizeof e, envp);
    logline("krun_set_env ctx=%u envp=%s", ctx, e);
    return rc("krun_set_env");
}
int32_t krun_start_enter(uint32_t ctx) {
    logline("krun_start_enter ctx=%u", ctx);
    return START_RC;
}
