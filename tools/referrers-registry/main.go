// referrers-registry: an OCI distribution registry that answers the OCI 1.1
// referrers API (GET /v2/<name>/referrers/<digest>), for tests that must meet a
// real referrers-API registry as well as distribution 2.8 (which has none).
//
// It is go-containerregistry's registry package (pkg/registry) with referrers
// support switched on (`crane registry serve` leaves it off), wrapped so that
// it follows the OCI distribution spec 1.1 where v0.22.0 does not:
//
//   - each referrer descriptor carries `artifactType` (the manifest's
//     artifactType, else its config mediaType; v0.22.0 always reports the
//     config mediaType) and the manifest's `annotations` (v0.22.0 omits them);
//   - `?artifactType=` filters the list, and the answer then says so with
//     `OCI-Filters-Applied: artifactType` (v0.22.0 ignores the filter);
//   - a referrers request never answers 404 (an unknown repository lists none);
//   - a successful manifest PUT whose body has a `subject` answers with
//     `OCI-Subject: <subject digest>` (v0.22.0 sends none), which tells clients
//     the registry indexed it and no `sha256-<hex>` fallback tag is needed.
//
// Manifests are kept in memory, blobs on disk under --disk. Loopback only unless told otherwise.
//
//	referrers-registry --address 127.0.0.1:5001 --disk /var/lib/stella-referrers-registry
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

const ociIndex = "application/vnd.oci.image.index.v1+json"

// descriptor is an OCI content descriptor as the referrers API lists it.
type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

// conformant wraps the inner registry handler; see the package comment.
type conformant struct{ inner http.Handler }

// repoAndLast splits /v2/<name>/<kind>/<last> into name, kind, last.
func repoAndLast(path string) (name, kind, last string, ok bool) {
	elems := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(elems) < 4 || elems[0] != "v2" {
		return "", "", "", false
	}
	return strings.Join(elems[1:len(elems)-2], "/"), elems[len(elems)-2], elems[len(elems)-1], true
}

func (c conformant) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, kind, last, ok := repoAndLast(r.URL.Path)
	switch {
	case ok && kind == "referrers" && r.Method == http.MethodGet:
		c.referrers(w, r, name, last)
	case ok && kind == "manifests" && r.Method == http.MethodPut:
		c.putManifest(w, r)
	default:
		c.inner.ServeHTTP(w, r)
	}
}

func (c conformant) referrers(w http.ResponseWriter, r *http.Request, name, subject string) {
	rec := httptest.NewRecorder()
	c.inner.ServeHTTP(rec, r)
	var list index
	switch rec.Code {
	case http.StatusOK:
		if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
			http.Error(w, "referrers: inner registry answered an unreadable index", http.StatusInternalServerError)
			return
		}
	case http.StatusNotFound:
		// The repository is unknown: it has no referrers. The spec forbids a 404 here.
	default:
		copyResponse(w, rec)
		return
	}
	want := r.URL.Query().Get("artifactType")
	out := []descriptor{}
	for _, d := range list.Manifests {
		full, ok := c.manifest(r, name, d.Digest)
		if !ok {
			continue
		}
		if full.ArtifactType != "" {
			d.ArtifactType = full.ArtifactType
		} else {
			d.ArtifactType = full.Config.MediaType
		}
		if len(full.Annotations) > 0 {
			d.Annotations = full.Annotations
		}
		if want != "" && d.ArtifactType != want {
			continue
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	body, _ := json.Marshal(index{SchemaVersion: 2, MediaType: ociIndex, Manifests: out})
	if want != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	w.Header().Set("Content-Type", ociIndex)
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

type manifestFields struct {
	ArtifactType string `json:"artifactType"`
	Config       struct {
		MediaType string `json:"mediaType"`
	} `json:"config"`
	Annotations map[string]string `json:"annotations"`
	Subject     *struct {
		Digest string `json:"digest"`
	} `json:"subject"`
}

// manifest reads repository name's manifest by digest through the inner handler, in process.
func (c conformant) manifest(r *http.Request, name, digest string) (manifestFields, bool) {
	var m manifestFields
	req := httptest.NewRequest(http.MethodGet, "/v2/"+name+"/manifests/"+digest, nil).WithContext(r.Context())
	req.Header.Set("Accept", "*/*")
	rec := httptest.NewRecorder()
	c.inner.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &m) != nil {
		return m, false
	}
	return m, true
}

func (c conformant) putManifest(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "reading the manifest failed", http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var m manifestFields
	subject := ""
	if json.Unmarshal(body, &m) == nil && m.Subject != nil {
		subject = m.Subject.Digest
	}
	if subject == "" {
		c.inner.ServeHTTP(w, r)
		return
	}
	c.inner.ServeHTTP(&subjectWriter{ResponseWriter: w, subject: subject}, r)
}

// subjectWriter adds OCI-Subject to a 201 answer.
type subjectWriter struct {
	http.ResponseWriter
	subject string
	wrote   bool
}

func (s *subjectWriter) WriteHeader(code int) {
	if !s.wrote && code == http.StatusCreated {
		s.Header().Set("OCI-Subject", s.subject)
	}
	s.wrote = true
	s.ResponseWriter.WriteHeader(code)
}

func (s *subjectWriter) Write(p []byte) (int, error) {
	if !s.wrote {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(p)
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

func main() {
	address := flag.String("address", "127.0.0.1:5001", "host:port to listen on (port 0 picks a free one, printed on stdout)")
	disk := flag.String("disk", "", "directory for blobs (default: in memory)")
	verbose := flag.Bool("verbose", false, "log every request")
	flag.Parse()

	opts := []registry.Option{registry.WithReferrersSupport(true)}
	if *disk != "" {
		if err := os.MkdirAll(*disk, 0o755); err != nil {
			log.Fatalf("referrers-registry: %v", err)
		}
		opts = append(opts, registry.WithBlobHandler(registry.NewDiskBlobHandler(*disk)))
	}
	if !*verbose {
		opts = append(opts, registry.Logger(log.New(io.Discard, "", 0)))
	}
	ln, err := net.Listen("tcp", *address)
	if err != nil {
		log.Fatalf("referrers-registry: listen %s: %v", *address, err)
	}
	// The chosen address on stdout, one line: what callers read when they asked for port 0.
	os.Stdout.WriteString(ln.Addr().String() + "\n")

	srv := &http.Server{Handler: conformant{inner: registry.New(opts...)}, ReadHeaderTimeout: 30 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatalf("referrers-registry: %v", err)
	}
}
