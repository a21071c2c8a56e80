package health

// Status is a member's health verdict.
type Status uint8

const (
	Unknown Status = iota // no verdict yet: balanced on
	Up
	Down
)

func (s Status) String() string {
	switch s {
	case Up:
		return "up"
	case Down:
		return "down"
	}
	return "unknown"
}

// State is one member's check history: the verdict and the run of equal
// results since the last change. The zero value is Unknown.
type State struct {
	Status Status
	run    int  // consecutive results equal to last
	last   bool // the last result
}

// Observe records one check result and returns the status and whether it
// changed. rise is the successes needed to go up (MaxRetries), fall the
// failures needed to go down (MaxRetriesDown); values below 1 count as 1.
// From Unknown one success is enough (see the package doc).
func (s *State) Observe(ok bool, rise, fall int) (Status, bool) {
	rise, fall = max(rise, 1), max(fall, 1)
	if s.run == 0 || ok != s.last {
		s.run = 0
	}
	s.last = ok
	s.run++
	next := s.Status
	switch {
	case ok && s.Status == Unknown:
		next = Up
	case ok && s.Status == Down && s.run >= rise:
		next = Up
	case !ok && s.Status != Down && s.run >= fall:
		next = Down
	}
	changed := next != s.Status
	s.Status = next
	return next, changed
}
