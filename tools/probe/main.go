// stella-probe: the health probe of the StellaOps support images, which have no shell, curl or
// wget. Standard library only; built by ci/src/support (CGO_ENABLED=0, both architectures) and
// installed as /usr/bin/stella-probe.
//
//	stella-probe [-timeout 3s] TARGET...
//
// Every TARGET must answer for exit status 0:
//
//	http://host:port/path   a GET answered with a 2xx status (redirects are not followed)
//	tcp://host:port         a TCP connection accepted
//
// Otherwise it prints one line per failing target to stderr and exits 1 (2 for bad usage), as
// Docker's HEALTHCHECK and Kubernetes' exec probes expect.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

func probeHTTP(ctx context.Context, client *http.Client, target string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "stella-probe")
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("HTTP %d", res.StatusCode)
	}
	return nil
}

func probeTCP(ctx context.Context, hostport string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return err
	}
	return c.Close()
}

func probe(timeout time.Duration, target string) error {
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	switch u.Scheme {
	case "http":
		client := &http.Client{
			Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		return probeHTTP(ctx, client, target)
	case "tcp":
		if u.Host == "" || u.Port() == "" {
			return errors.New("tcp target needs host:port")
		}
		return probeTCP(ctx, u.Host)
	default:
		return fmt.Errorf("unsupported scheme %q (http or tcp)", u.Scheme)
	}
}

func main() {
	timeout := flag.Duration("timeout", 3*time.Second, "time allowed for each target")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: stella-probe [-timeout 3s] http://host:port/path | tcp://host:port ...")
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	failed := false
	for _, t := range flag.Args() {
		if err := probe(*timeout, t); err != nil {
			fmt.Fprintf(os.Stderr, "stella-probe: %s: %v\n", t, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}
