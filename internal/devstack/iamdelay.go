package devstack

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// delayProxy stands in front of versitygw's S3 and IAM endpoints and makes
// new access keys take a while to work, as they do on AWS, where IAM is
// eventually consistent: versitygw honours a key the moment IAM returns it,
// so without this no test could see code that relies on that.
//
// It learns each key's creation time from the IAM answers that pass through
// it (CreateAccessKey, and ListAccessKeys for keys made before it started),
// using the CreateDate IAM reports, and refuses S3 requests signed with a key
// younger than delay with S3's InvalidAccessKeyId. Keys it never saw in an
// IAM answer, such as the root key, are never refused.
type delayProxy struct {
	delay time.Duration

	mu sync.Mutex
	// born maps an access key id to the CreateDate IAM reported for it.
	born map[string]time.Time

	s3, iam *proxyServer
}

// proxyServer is one listening side of the proxy. It can be stopped and
// started again on the same address, as the gateway behind it can.
type proxyServer struct {
	addr    string
	handler http.Handler
	// l is bound from listen until stop, serving or not.
	l    net.Listener
	srv  *http.Server
	done chan struct{}
}

func newDelayProxy(delay time.Duration, s3Addr, gwS3Addr, iamAddr, gwIAMAddr string) *delayProxy {
	p := &delayProxy{delay: delay, born: map[string]time.Time{}}
	s3 := reverseProxy(gwS3Addr, nil)
	p.s3 = &proxyServer{addr: s3Addr, handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := accessKeyOf(r); id != "" && p.propagating(id) {
			writeInvalidAccessKey(w, r, id)
			return
		}
		s3.ServeHTTP(w, r)
	})}
	p.iam = &proxyServer{addr: iamAddr, handler: reverseProxy(gwIAMAddr, p.learn)}
	return p
}

// reverseProxy forwards to addr as it is, Host header included: requests are
// signed for the proxy's host, and the gateway checks the signature against
// the Host it receives.
func reverseProxy(addr string, modify func(*http.Response) error) *httputil.ReverseProxy {
	target := &url.URL{Scheme: "http", Host: addr}
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		ModifyResponse: modify,
	}
}

// listen binds both addresses without serving yet, so that no other
// process can take the ports while the gateway behind them starts.
func (p *delayProxy) listen() error { return p.both((*proxyServer).listen) }

// start serves both addresses.
func (p *delayProxy) start() error { return p.both((*proxyServer).start) }

// both runs step on the S3 server and then the IAM one; should one fail,
// both are stopped.
func (p *delayProxy) both(step func(*proxyServer) error) error {
	for _, s := range []*proxyServer{p.s3, p.iam} {
		if err := step(s); err != nil {
			p.stop()
			return err
		}
	}
	return nil
}

func (p *delayProxy) stop() {
	p.s3.stop()
	p.iam.stop()
}

func (s *proxyServer) listen() error {
	if s.l != nil {
		return nil
	}
	l, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("iam delay proxy: %w", err)
	}
	s.l = l
	return nil
}

func (s *proxyServer) start() error {
	if err := s.listen(); err != nil {
		return err
	}
	l := s.l
	s.srv = &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(l)
	}()
	return nil
}

func (s *proxyServer) stop() {
	if s.srv == nil {
		if s.l != nil {
			_ = s.l.Close()
			s.l = nil
		}
		return
	}
	s.l = nil
	_ = s.srv.Close()
	<-s.done
	s.srv = nil
}

// propagating reports whether key id is younger than the delay.
func (p *delayProxy) propagating(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	born, ok := p.born[id]
	if !ok {
		return false
	}
	if time.Since(born) >= p.delay {
		// Propagated for good: forget it.
		delete(p.born, id)
		return false
	}
	return true
}

// iamKey is an access key in an IAM answer.
type iamKey struct {
	AccessKeyId string
	CreateDate  time.Time
}

// learn reads the access keys in an IAM answer. A created key's age counts
// from its CreateDate; a listed one is noted only when it is new to the
// proxy, so that keys made before the proxy started age from their real
// creation too.
func (p *delayProxy) learn(resp *http.Response) error {
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))

	var doc struct {
		Created []iamKey `xml:"CreateAccessKeyResult>AccessKey"`
		Listed  []iamKey `xml:"ListAccessKeysResult>AccessKeyMetadata>member"`
	}
	if err := xml.Unmarshal(body, &doc); err != nil {
		// Not XML, or not an answer about keys: nothing to learn.
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range doc.Created {
		born := k.CreateDate
		if born.IsZero() {
			born = time.Now()
		}
		p.born[k.AccessKeyId] = born
	}
	for _, k := range doc.Listed {
		if _, known := p.born[k.AccessKeyId]; !known && !k.CreateDate.IsZero() && time.Since(k.CreateDate) < p.delay {
			p.born[k.AccessKeyId] = k.CreateDate
		}
	}
	return nil
}

// accessKeyOf returns the access key id a request is signed with: SigV4's
// Credential in the Authorization header or the presigned X-Amz-Credential,
// or SigV2's equivalents; "" for an anonymous request.
func accessKeyOf(r *http.Request) string {
	auth := r.Header.Get("Authorization")
	switch {
	case strings.HasPrefix(auth, "AWS4-"):
		_, cred, ok := strings.Cut(auth, "Credential=")
		if !ok {
			return ""
		}
		id, _, _ := strings.Cut(cred, "/")
		return strings.TrimSpace(id)
	case strings.HasPrefix(auth, "AWS "):
		id, _, _ := strings.Cut(strings.TrimPrefix(auth, "AWS "), ":")
		return strings.TrimSpace(id)
	}
	q := r.URL.Query()
	if cred := q.Get("X-Amz-Credential"); cred != "" {
		id, _, _ := strings.Cut(cred, "/")
		return id
	}
	return q.Get("AWSAccessKeyId")
}

// writeInvalidAccessKey answers as S3 does for a key it does not know.
func writeInvalidAccessKey(w http.ResponseWriter, r *http.Request, id string) {
	requestID := newRequestID()
	body, err := xml.Marshal(struct {
		XMLName        xml.Name `xml:"Error"`
		Code           string
		Message        string
		AWSAccessKeyId string
		RequestId      string
		HostId         string
	}{
		Code:           "InvalidAccessKeyId",
		Message:        "The AWS Access Key Id you provided does not exist in our records.",
		AWSAccessKeyId: id,
		RequestId:      requestID,
		HostId:         "orgforge-iam-delay",
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	body = append([]byte(xml.Header), body...)
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("x-amz-request-id", requestID)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusForbidden)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

func newRequestID() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "0000000000000000"
	}
	return strings.ToUpper(hex.EncodeToString(b))
}
