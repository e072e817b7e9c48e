// The pod sandbox ("pause") process of the testbed's node: containerd starts one per pod
// to hold its namespaces. It waits for a stop signal and, as PID 1 of the pod, reaps any
// orphan that ends up as its child. No registry is reachable here, so the image it goes
// into is made locally (zeta_testbed.ociarchive).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for received := range signals {
		if received != syscall.SIGCHLD {
			os.Exit(0)
		}
		reapChildren()
	}
}

// reapChildren collects every exited child; one SIGCHLD may stand for several exits.
func reapChildren() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
