// A small Go HTTP client for the jail's integration tests (tests/integration/test_jail_run.py).
// Go has its own resolver and preempts goroutines with SIGURG: both must work under the jail.
// Usage: httpget URL   prints the body; with several busy goroutines running meanwhile.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"sync"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: httpget URL")
		os.Exit(2)
	}
	// Busy goroutines keep the scheduler preempting (SIGURG) while the request is in flight.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < runtime.NumCPU()+1; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for {
				select {
				case <-stop:
					return
				default:
					n++
				}
			}
		}()
	}
	client := &http.Client{Timeout: 20 * time.Second}
	var body []byte
	var err error
	for i := 0; i < 3 && (i == 0 || err == nil); i++ {
		var resp *http.Response
		resp, err = client.Get(os.Args[1])
		if err != nil {
			break
		}
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	close(stop)
	wg.Wait()
	if err != nil {
		fmt.Fprintln(os.Stderr, "httpget:", err)
		os.Exit(1)
	}
	os.Stdout.Write(body)
}
