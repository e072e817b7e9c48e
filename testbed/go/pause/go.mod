// The testbed node's pause program: standard library only, so nothing to pin.
module zeta.dev/testbed/pause

go 1.26.0
