// Package health is the load balancer's health checking: the checks (TCP
// connect, HTTP with expected status codes), the per-member state machine
// and a scheduler that runs one check loop per member. It knows nothing of
// the NSDB or of namespaces: the agent (pkg/agent/lbhealth) gives it a dialer
// whose sockets live in the health-check namespace behind the virtual
// router, and writes the transitions it reports as member statuses.
//
// Semantics (Octavia's): a member is declared down after MaxRetriesDown
// consecutive failed checks and up after MaxRetries consecutive successes.
// Before its first verdict a member's status is unknown, and unknown
// members are balanced on (the simulation only skips "down"); the first
// verdict needs one success or MaxRetriesDown failures, so a new member is
// usable at once and a dead one leaves rotation as fast as a running one
// would. A check fails when the connection is refused or not established
// within the timeout, or, for HTTP, when no response arrives within the
// timeout or its status is not one of the expected codes.
package health
