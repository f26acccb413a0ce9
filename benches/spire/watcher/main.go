// The watching clients of benches/spire/compare.sh: one program used against both
// `meshid serve workload-api` and SPIRE's `spire-agent`, so both serve the same clients.
//
//	watcher -addr unix:///path/api.sock -n 100 [-timeout 0]
//
// Opens n independent Workload API connections (n goroutines, each its own go-spiffe
// workloadapi.Client over its own gRPC connection, each running WatchX509Context) and
// prints, on standard output, one line per X.509 context received:
//
//	u <receive time, Unix ns> <client index> <leaf serial, hex> <leaf NotBefore, Unix s>
//
// The receive time is taken (time.Now, the wall clock the servers' logs use) as soon as
// go-spiffe hands the update over, i.e. after it has parsed and checked the response.
// Once every client has received its first update it prints `ready <Unix ns>`; each
// watch error is printed as `e <Unix ns> <client index> <error>` (and counted). It runs
// until SIGINT/SIGTERM, or -timeout if set, then prints `end errors <n>` and exits 0.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

type watcher struct {
	index int
	out   chan<- string
	first *sync.Once
	ready func()
	errs  *atomic.Int64
}

func (w *watcher) OnX509ContextUpdate(c *workloadapi.X509Context) {
	now := time.Now().UnixNano()
	svid := c.DefaultSVID()
	if svid == nil || len(svid.Certificates) == 0 {
		w.out <- fmt.Sprintf("e %d %d empty X.509 context", now, w.index)
		w.errs.Add(1)
		return
	}
	leaf := svid.Certificates[0]
	w.out <- fmt.Sprintf("u %d %d %s %d", now, w.index, leaf.SerialNumber.Text(16), leaf.NotBefore.Unix())
	w.first.Do(w.ready)
}

func (w *watcher) OnX509ContextWatchError(err error) {
	if err == nil || strings.Contains(err.Error(), "context canceled") {
		return
	}
	w.errs.Add(1)
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	w.out <- fmt.Sprintf("e %d %d %s", time.Now().UnixNano(), w.index, msg)
}

func main() {
	addr := flag.String("addr", "", "Workload API address (unix:///path)")
	n := flag.Int("n", 1, "watching clients (connections)")
	timeout := flag.Duration("timeout", 0, "stop after this long (0: until SIGINT/SIGTERM)")
	flag.Parse()
	if *addr == "" || *n < 1 {
		fmt.Fprintln(os.Stderr, "usage: watcher -addr unix:///path -n N [-timeout D]")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}

	// One writer: lines are flushed whenever no other line is waiting, so a reader of
	// the output sees each update within moments of it.
	out := make(chan string, 4096)
	written := make(chan struct{})
	go func() {
		w := bufio.NewWriterSize(os.Stdout, 1<<16)
		for l := range out {
			w.WriteString(l)
			w.WriteByte('\n')
			if len(out) == 0 {
				w.Flush()
			}
		}
		w.Flush()
		close(written)
	}()

	var pending atomic.Int64
	pending.Store(int64(*n))
	ready := func() {
		if pending.Add(-1) == 0 {
			out <- fmt.Sprintf("ready %d", time.Now().UnixNano())
		}
	}
	var errs atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < *n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			client, err := workloadapi.New(ctx, workloadapi.WithAddr(*addr))
			if err != nil {
				errs.Add(1)
				out <- fmt.Sprintf("e %d %d %s", time.Now().UnixNano(), i, err)
				return
			}
			defer client.Close()
			w := &watcher{index: i, out: out, first: &sync.Once{}, ready: ready, errs: &errs}
			// Returns when ctx ends (go-spiffe retries failed streams with backoff).
			_ = client.WatchX509Context(ctx, w)
		}(i)
	}
	wg.Wait()
	out <- fmt.Sprintf("end errors %d", errs.Load())
	close(out)
	<-written
}
