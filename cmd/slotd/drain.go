package main

import (
	"os"
	"time"

	"go.uber.org/zap"
)

// shutdownDelayMax bounds -shutdown-delay: load balancers poll readiness
// every few seconds, so minutes are already generous, and the
// supervisor's stop timeout must cover the delay and the drain after it.
const shutdownDelayMax = 5 * time.Minute

// drainDelay runs between the stop signal and the listener's close: for
// delay, /readyz answers 503 "draining" (drain turns it so, e.g.
// httpapi.Server.Drain) while the API goes on answering, so that a load
// balancer polling readiness takes the instance out before its
// connections are refused. A second SIGTERM or SIGINT on sig ends the
// wait early. A zero delay returns at once.
func drainDelay(drain func(), delay time.Duration, sig <-chan os.Signal, log *zap.Logger) {
	if delay <= 0 {
		return
	}
	drain()
	log.Info("shutdown delay: readiness off, still serving", zap.Duration("shutdown_delay", delay))
	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-timer.C:
		log.Info("shutdown delay over")
	case s := <-sig:
		log.Info("shutdown delay cut short", zap.String("signal", s.String()))
	}
}
