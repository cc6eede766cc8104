// Command local runs tarport as one process: the HTTP API, the workers and
// the stores, on a data directory. `make run` starts it.
package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tarport/tarport/infra/local/app"
	"github.com/tarport/tarport/shared/settings"
)

func main() {
	if err := run(); err != nil {
		slog.Error("tarport stopped", "err", err)
		os.Exit(1)
	}
}

func run() error {
	s, err := settings.FromEnv()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: s.LogLevel}))
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return err
	}
	if s.PublicURL == "" {
		s.Addr = ln.Addr().String() // a port 0 is the one the system gave
	}
	a, err := app.New(ctx, s, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer a.Close()

	// kill -USR1 warms the discovery caches now (the schedule's job on AWS).
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	go func() {
		for range usr1 {
			log.Info("warming the discovery caches (SIGUSR1)")
			a.WarmNow()
		}
	}()

	srv := a.Server()
	log.Info("tarport listening", "addr", ln.Addr().String(), "url", s.LocalURL(), "data", s.DataDir, "dockerhub", s.DockerHubRegistry) // settings refuse credentials in these URLs
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	case <-ctx.Done():
		log.Info("shutting down")
		// Longer than /api/pull's 20 s wait, so no handler outlives the stores.
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}
	return nil
}
