/*
 * nc-powerbtn: powers the tiny guest off when the ACPI power button is pressed.
 *
 * `virsh shutdown` (and any provider "stop" that asks nicely) sends an ACPI power
 * button event. The guest's init is a shell script, not a full init system with acpid,
 * so without this the request would be ignored and a graceful stop would time out.
 * Watches every /dev/input/event* device for KEY_POWER, then syncs and powers off.
 */
#include <dirent.h>
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/reboot.h>
#include <unistd.h>

int main(void) {
    struct pollfd fds[32];
    int n = 0;
    DIR *d = opendir("/dev/input");
    struct dirent *e;
    while (d && (e = readdir(d)) && n < 32) {
        if (strncmp(e->d_name, "event", 5)) continue;
        char path[300];
        snprintf(path, sizeof path, "/dev/input/%s", e->d_name);
        int fd = open(path, O_RDONLY | O_NONBLOCK);
        if (fd >= 0) { fds[n].fd = fd; fds[n].events = POLLIN; n++; }
    }
    if (d) closedir(d);
    if (n == 0) { fprintf(stderr, "nc-powerbtn: no input devices\n"); return 1; }
    for (;;) {
        if (poll(fds, (nfds_t)n, -1) < 0) continue;
        for (int i = 0; i < n; i++) {
            struct input_event ev;
            if (!(fds[i].revents & POLLIN)) continue;
            while (read(fds[i].fd, &ev, sizeof ev) == (ssize_t)sizeof ev) {
                if (ev.type == EV_KEY && ev.code == KEY_POWER && ev.value == 1) {
                    printf("NOVACRON-GUEST-POWEROFF\n");
                    fflush(stdout);
                    sync();
                    reboot(RB_POWER_OFF);
                }
            }
        }
    }
}
