package main

import (
	"sync"
	"time"
)

// Throttle limits requests in flight and requests admitted per second (a sliding one-second
// window). A limit <= 0 disables that check. Rejected requests are not counted.
type Throttle struct {
	mu            sync.Mutex
	maxConcurrent int
	maxRPS        int
	inFlight      int
	admitted      []time.Time
}

// Set changes the limits that are given (nil keeps the current one).
func (t *Throttle) Set(maxConcurrent, maxRPS *int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if maxConcurrent != nil {
		t.maxConcurrent = *maxConcurrent
	}
	if maxRPS != nil {
		t.maxRPS = *maxRPS
	}
}

// Acquire admits a request, returning a release function, or reports why it is rejected.
func (t *Throttle) Acquire(now time.Time) (release func(), reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cut := now.Add(-time.Second)
	i := 0
	for i < len(t.admitted) && !t.admitted[i].After(cut) {
		i++
	}
	t.admitted = t.admitted[i:]
	if t.maxConcurrent > 0 && t.inFlight >= t.maxConcurrent {
		return nil, "too many concurrent requests"
	}
	if t.maxRPS > 0 && len(t.admitted) >= t.maxRPS {
		return nil, "too many requests per second"
	}
	t.inFlight++
	t.admitted = append(t.admitted, now)
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			t.inFlight--
			t.mu.Unlock()
		})
	}, ""
}
