// A SPIFFE Workload API client built on go-spiffe (and so grpc-go), used by meshid's tests
// as an independent peer of `meshid serve workload-api`.
//
//	go-spiffe-peer fetch -addr unix:///path/api.sock
//	    One FetchX509Context. Prints, per SVID:
//	        svid <spiffe id> chain <n> not_after <RFC 3339> verified <yes|error>
//	    then, per bundle:
//	        bundle <trust domain> authorities <n>
//	          authority sha256 <hex of the DER>   (one line per authority)
//	    and exits 0 (1 on any error).
//
//	go-spiffe-peer watch -addr unix:///path/api.sock -n 2 -timeout 30s
//	    WatchX509Context. Prints, on every update:
//	        update <n> id <spiffe id> serial <hex> not_after <RFC 3339>
//	    and exits 0 once it has seen n distinct default SVIDs (by serial), 1 on timeout.
//
//	go-spiffe-peer x509source -addr unix:///path/api.sock -n 2 -timeout 30s
//	    The same through a watching workloadapi.X509Source (what a go-spiffe service uses):
//	    prints the same line for the source's SVID at start and after every Updated().
package main

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/logger"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: go-spiffe-peer fetch|watch -addr unix:///path [-n N] [-timeout D]")
		os.Exit(2)
	}
	mode := os.Args[1]
	flags := flag.NewFlagSet(mode, flag.ExitOnError)
	addr := flags.String("addr", "", "Workload API address (unix:///path)")
	n := flags.Int("n", 2, "watch: distinct SVIDs to wait for")
	timeout := flags.Duration("timeout", 30*time.Second, "overall deadline")
	_ = flags.Parse(os.Args[2:])
	if *addr == "" {
		fmt.Fprintln(os.Stderr, "-addr is required")
		os.Exit(2)
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var err error
	switch mode {
	case "fetch":
		err = fetch(ctx, *addr)
	case "watch":
		err = watch(ctx, *addr, *n)
	case "x509source":
		err = source(ctx, *addr, *n)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func fetch(ctx context.Context, addr string) error {
	x509Context, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr(addr), workloadapi.WithLogger(logger.Std))
	if err != nil {
		return err
	}
	for _, svid := range x509Context.SVIDs {
		verified := "yes"
		id, _, verr := x509svid.Verify(svid.Certificates, x509Context.Bundles)
		if verr != nil {
			verified = "error:" + verr.Error()
		} else if id != svid.ID {
			verified = "error:verified as " + id.String()
		}
		fmt.Printf("svid %s chain %d not_after %s verified %s\n",
			svid.ID, len(svid.Certificates), svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339), verified)
	}
	for _, bundle := range x509Context.Bundles.Bundles() {
		fmt.Printf("bundle %s authorities %d\n", bundle.TrustDomain(), len(bundle.X509Authorities()))
		for _, authority := range bundle.X509Authorities() {
			fmt.Printf("  authority sha256 %x\n", sha256.Sum256(authority.Raw))
		}
	}
	return nil
}

// watcher prints every update and cancels the watch once it has seen `want` distinct SVIDs.
type watcher struct {
	want   int
	seen   map[string]bool
	cancel context.CancelFunc
}

func (w *watcher) OnX509ContextUpdate(x509Context *workloadapi.X509Context) {
	svid := x509Context.DefaultSVID()
	leaf := svid.Certificates[0]
	serial := leaf.SerialNumber.Text(16)
	w.seen[serial] = true
	fmt.Printf("update %d id %s serial %s not_after %s\n",
		len(w.seen), svid.ID, serial, leaf.NotAfter.UTC().Format(time.RFC3339))
	if len(w.seen) >= w.want {
		w.cancel()
	}
}

func (w *watcher) OnX509ContextWatchError(err error) {
	if len(w.seen) < w.want {
		fmt.Fprintln(os.Stderr, "watch error:", err)
	}
}

func watch(ctx context.Context, addr string, want int) error {
	watchCtx, stop := context.WithCancel(ctx)
	defer stop()
	w := &watcher{want: want, seen: map[string]bool{}, cancel: stop}
	err := workloadapi.WatchX509Context(watchCtx, w, workloadapi.WithAddr(addr), workloadapi.WithLogger(logger.Std))
	if len(w.seen) >= want {
		return nil
	}
	return fmt.Errorf("timed out with %d distinct SVIDs of %d (watch ended with: %v)", len(w.seen), want, err)
}

func source(ctx context.Context, addr string, want int) error {
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(addr), workloadapi.WithLogger(logger.Std)))
	if err != nil {
		return fmt.Errorf("new X509Source: %w", err)
	}
	defer src.Close()
	seen := map[string]bool{}
	for {
		svid, err := src.GetX509SVID()
		if err != nil {
			return fmt.Errorf("GetX509SVID: %w", err)
		}
		leaf := svid.Certificates[0]
		serial := leaf.SerialNumber.Text(16)
		if !seen[serial] {
			seen[serial] = true
			fmt.Printf("update %d id %s serial %s not_after %s\n",
				len(seen), svid.ID, serial, leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		if len(seen) >= want {
			return nil
		}
		select {
		case <-src.Updated():
		case <-ctx.Done():
			return fmt.Errorf("timed out with %d distinct SVIDs of %d", len(seen), want)
		}
	}
}
