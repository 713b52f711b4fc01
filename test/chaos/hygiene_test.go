package chaos_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/controllers"
)

// collectors watch, for the whole run, every Organization (conditions
// included), every Event of both APIs and every Secret the operator wrote.
// Organizations and Events go to files for the hygiene check; the Secrets'
// passwords and keys are kept in memory only, as the strings to look for.
type collectors struct {
	wg         sync.WaitGroup
	orgsPath   string
	eventsPath string

	mu       sync.Mutex
	secrets  map[string]string // value -> where it was found
	messages map[string]bool   // every condition message seen
	events   int
	orgs     int
}

func startCollectors(ctx context.Context, h *harness) *collectors {
	c := &collectors{
		orgsPath:   filepath.Join(h.dir, "organizations.jsonl"),
		eventsPath: filepath.Join(h.dir, "events.jsonl"),
		secrets:    map[string]string{},
		messages:   map[string]bool{},
	}
	// The operator's own secrets are never to be seen either.
	for _, srv := range h.servers {
		c.secrets[srv.pg.AdminPassword] = "the PostgreSQL admin password of " + srv.name
	}
	c.secrets[h.stack.S3.SecretKey] = "the S3/IAM root secret key"

	orgs := newLineWriter(c.orgsPath)
	events := newLineWriter(c.eventsPath)
	c.run(ctx, h.k8s, func() client.ObjectList { return &tenancyv1alpha1.OrganizationList{} }, nil, func(o runtime.Object) {
		org := o.(*tenancyv1alpha1.Organization)
		orgs.write(org)
		c.mu.Lock()
		c.orgs++
		for _, cond := range org.Status.Conditions {
			c.messages[cond.Message] = true
		}
		c.mu.Unlock()
	})
	managed := client.MatchingLabels{controllers.LabelManagedBy: controllers.ManagedByValue}
	c.run(ctx, h.k8s, func() client.ObjectList { return &corev1.SecretList{} }, []client.ListOption{managed}, func(o runtime.Object) {
		s := o.(*corev1.Secret)
		c.mu.Lock()
		// A rotation's previous and pending credentials too: a pending
		// key that a crash left may never become the current one.
		for _, k := range []string{"password", "secret-access-key", "previous-password", "previous-secret-access-key", "pending-secret-access-key"} {
			if v := string(s.Data[k]); v != "" {
				c.secrets[v] = fmt.Sprintf("%s of Secret %s/%s", k, s.Namespace, s.Name)
			}
		}
		c.mu.Unlock()
	})
	c.run(ctx, h.k8s, func() client.ObjectList { return &corev1.EventList{} }, nil, func(o runtime.Object) {
		events.write(o)
		c.mu.Lock()
		c.events++
		c.mu.Unlock()
	})
	c.run(ctx, h.k8s, func() client.ObjectList { return &eventsv1.EventList{} }, nil, func(o runtime.Object) {
		events.write(o)
		c.mu.Lock()
		c.events++
		c.mu.Unlock()
	})
	go func() {
		<-ctx.Done()
		c.wg.Wait()
		orgs.close()
		events.close()
	}()
	return c
}

// lookFor adds a secret, of a service a scenario started, to those the
// hygiene check looks for.
func (c *collectors) lookFor(secret, where string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.secrets[secret] = where
}

// run lists and then watches a kind until ctx ends, listing again whenever
// the watch breaks.
func (c *collectors) run(ctx context.Context, k client.WithWatch, newList func() client.ObjectList, opts []client.ListOption, handle func(runtime.Object)) {
	c.wg.Go(func() {
		for ctx.Err() == nil {
			list := newList()
			if err := k.List(ctx, list, opts...); err != nil {
				sleep(ctx, time.Second)
				continue
			}
			items, _ := meta.ExtractList(list)
			for _, it := range items {
				handle(it)
			}
			rv := list.(metav1.ListInterface).GetResourceVersion()
			w, err := k.Watch(ctx, newList(), append(opts, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})...)
			if err != nil {
				sleep(ctx, time.Second)
				continue
			}
			for ev := range w.ResultChan() {
				if ev.Type == watch.Error {
					break
				}
				if ev.Object != nil {
					handle(ev.Object)
				}
			}
			w.Stop()
		}
	})
}

// wait returns once every watch has ended; ctx must be done.
func (c *collectors) wait() {
	c.wg.Wait()
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

type lineWriter struct {
	mu sync.Mutex
	f  *os.File
	w  *bufio.Writer
}

func newLineWriter(path string) *lineWriter {
	f, err := os.Create(path)
	if err != nil {
		panic(err)
	}
	return &lineWriter{f: f, w: bufio.NewWriter(f)}
}

func (l *lineWriter) write(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.w.Write(append(b, '\n'))
}

func (l *lineWriter) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.w.Flush()
	_ = l.f.Close()
}

var (
	// dsnWithPassword is a connection URL that carries a password.
	dsnWithPassword = regexp.MustCompile(`postgres(ql)?://[^:/@\s"]+:[^@\s"]+@`)
	// passwordClause is the PASSWORD clause of CREATE or ALTER ROLE.
	passwordClause = regexp.MustCompile(`(?i)\bPASSWORD\s+(E?'[^']*')`)
)

// checkHygiene reads every operator log, every Organization and Event seen
// and the PostgreSQL statement log, and returns each place a secret
// appears. Only the database Secret may hold a password outside PostgreSQL,
// and the SQL must carry SCRAM verifiers, never a password.
func checkHygiene(h *harness, c *collectors) (leaks []string, report string) {
	c.mu.Lock()
	secrets := make(map[string]string, len(c.secrets))
	for k, v := range c.secrets {
		secrets[k] = v
	}
	messages := make([]string, 0, len(c.messages))
	for m := range c.messages {
		messages = append(messages, m)
	}
	orgs, events := c.orgs, c.events
	c.mu.Unlock()
	finder := newSecretFinder(secrets)

	var logBytes int64
	debug := false
	h.mu.Lock()
	logs := append([]string(nil), h.logs...)
	h.mu.Unlock()
	for _, path := range logs {
		b, err := os.ReadFile(path)
		if err != nil {
			leaks = append(leaks, fmt.Sprintf("hygiene: cannot read %s: %v", path, err))
			continue
		}
		logBytes += int64(len(b))
		debug = debug || strings.Contains(string(b), "\tDEBUG\t")
		for _, where := range finder.find(b) {
			leaks = append(leaks, fmt.Sprintf("%s appears in operator log %s", where, filepath.Base(path)))
		}
		if m := dsnWithPassword.Find(b); m != nil {
			leaks = append(leaks, fmt.Sprintf("a DSN with a password appears in operator log %s", filepath.Base(path)))
		}
	}
	for _, m := range messages {
		for _, where := range finder.find([]byte(m)) {
			leaks = append(leaks, fmt.Sprintf("%s appears in a condition message", where))
		}
		if dsnWithPassword.MatchString(m) {
			leaks = append(leaks, "a DSN with a password appears in a condition message: "+m)
		}
	}
	for _, path := range []string{c.orgsPath, c.eventsPath} {
		b, err := os.ReadFile(path)
		if err != nil {
			leaks = append(leaks, fmt.Sprintf("hygiene: cannot read %s: %v", path, err))
			continue
		}
		for _, where := range finder.find(b) {
			leaks = append(leaks, fmt.Sprintf("%s appears in %s", where, filepath.Base(path)))
		}
		if dsnWithPassword.Match(b) {
			leaks = append(leaks, "a DSN with a password appears in "+filepath.Base(path))
		}
	}

	// Every server's statement log: the fleet's servers get tenants'
	// roles too.
	verifiers, cleartext, sqlBytes := 0, 0, 0
	for _, srv := range h.servers {
		sqlLog, err := os.ReadFile(srv.pg.LogPath)
		if err != nil {
			leaks = append(leaks, fmt.Sprintf("hygiene: cannot read the PostgreSQL log of %s: %v", srv.name, err))
		}
		sqlBytes += len(sqlLog)
		for _, where := range finder.find(sqlLog) {
			leaks = append(leaks, fmt.Sprintf("%s appears in the PostgreSQL statement log of %s", where, srv.name))
		}
		for _, m := range passwordClause.FindAllSubmatch(sqlLog, -1) {
			lit := strings.TrimPrefix(string(m[1]), "E")
			if strings.HasPrefix(lit, "'SCRAM-SHA-256$") {
				verifiers++
			} else {
				cleartext++
			}
		}
	}
	if cleartext > 0 {
		leaks = append(leaks, fmt.Sprintf("%d PASSWORD clauses in the PostgreSQL statement log are not SCRAM verifiers", cleartext))
	}

	// A check that read nothing proves nothing.
	switch {
	case len(logs) > 0 && !debug:
		leaks = append(leaks, "hygiene: the operator logs hold no DEBUG line; debug logging was not on")
	case len(logs) > 0 && verifiers == 0:
		leaks = append(leaks, "hygiene: the PostgreSQL statement log holds no PASSWORD clause; log_statement=all was not on")
	case len(logs) > 0 && (len(secrets) <= len(h.servers)+1 || len(messages) == 0 || events == 0):
		leaks = append(leaks, fmt.Sprintf("hygiene: collected too little (%d secrets, %d condition messages, %d events)", len(secrets), len(messages), events))
	}
	report = fmt.Sprintf("%d secrets looked for in %d operator logs (%.1f MB), %d Organization versions, %d condition messages, %d events and %.1f MB of SQL log of %d servers with %d SCRAM verifiers",
		len(secrets), len(logs), float64(logBytes)/1e6, orgs, len(messages), events, float64(sqlBytes)/1e6, len(h.servers), verifiers)
	return leaks, report
}

// secretFinder looks for many secrets in large texts in one pass: it keys
// each secret by its first window bytes and checks the rest on a hit.
type secretFinder struct {
	byPrefix map[string][]string
	short    []string
	where    map[string]string
}

const window = 16

func newSecretFinder(secrets map[string]string) *secretFinder {
	f := &secretFinder{byPrefix: map[string][]string{}, where: secrets}
	for s := range secrets {
		if len(s) < window {
			f.short = append(f.short, s)
			continue
		}
		f.byPrefix[s[:window]] = append(f.byPrefix[s[:window]], s)
	}
	return f
}

// find returns where each secret found in b came from, once each.
func (f *secretFinder) find(b []byte) []string {
	found := map[string]bool{}
	for i := 0; i+window <= len(b); i++ {
		cands, ok := f.byPrefix[string(b[i:i+window])]
		if !ok {
			continue
		}
		for _, s := range cands {
			if i+len(s) <= len(b) && string(b[i:i+len(s)]) == s {
				found[s] = true
			}
		}
	}
	for _, s := range f.short {
		if s != "" && strings.Contains(string(b), s) {
			found[s] = true
		}
	}
	var out []string
	for s := range found {
		out = append(out, f.where[s])
	}
	return out
}
