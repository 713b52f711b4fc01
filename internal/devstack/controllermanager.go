package devstack

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// KubeControllers are the kube-controller-manager controllers the stack
// runs: the two whose absence makes envtest unlike a cluster. Without the
// namespace controller a deleted namespace stays Terminating for ever;
// without the garbage collector nothing with an owner reference goes with
// its owner.
var KubeControllers = []string{"namespace-controller", "garbage-collector-controller"}

// ControllerManager is kube-controller-manager, built from source by
// hack/tools.sh next to kube-apiserver, running KubeControllers against
// the stack's apiserver.
type ControllerManager struct {
	// LogPath is its log file in the stack's folder.
	LogPath string
	// HealthzURL is its /healthz, served on loopback with a self-signed
	// certificate.
	HealthzURL string

	proc *process
}

// StartControllerManager runs kube-controller-manager with kube's admin
// kubeconfig, its log and certificate under dir, and returns once its
// /healthz answers ok.
func StartControllerManager(ctx context.Context, dir string, kube *Kube) (*ControllerManager, error) {
	assets, err := toolPath("envtest", EnvKubeAssets)
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(assets, "kube-controller-manager")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("kube-controller-manager is not in %s (%s names a folder built before it joined the tools): run hack/tools.sh envtest and use the folder it prints: %w", assets, EnvKubeAssets, err)
	}
	certDir := filepath.Join(dir, "kube-controller-manager")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cm := &ControllerManager{
		LogPath:    filepath.Join(dir, "kube-controller-manager.log"),
		HealthzURL: fmt.Sprintf("https://127.0.0.1:%d/healthz", port),
	}
	cm.proc, err = startProcess("kube-controller-manager", cm.LogPath, nil, nil, bin,
		"--kubeconfig="+kube.KubeconfigPath,
		"--controllers="+strings.Join(KubeControllers, ","),
		"--leader-elect=false",
		// Its own port serves only /healthz to the stack; the
		// certificate is one it makes for itself.
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir="+certDir,
	)
	if err != nil {
		return nil, err
	}
	if err := cm.waitHealthy(ctx, time.Minute); err != nil {
		cm.proc.kill()
		return nil, err
	}
	return cm, nil
}

// waitHealthy polls /healthz until it answers ok, the process exits, or the
// timeout passes.
func (cm *ControllerManager) waitHealthy(ctx context.Context, timeout time.Duration) error {
	// The certificate is self-signed by the process just started, on
	// loopback: there is nothing to verify it against.
	hc := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // see above
	}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	last := "no answer yet"
	for {
		if cm.proc.exited() {
			return cm.proc.failure(fmt.Errorf("exited: %v", cm.proc.err))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, cm.HealthzURL, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		if ctx.Err() != nil {
			return cm.proc.failure(ctx.Err())
		}
		if time.Now().After(deadline) {
			return cm.proc.failure(fmt.Errorf("%s not ok after %s; last: %s", cm.HealthzURL, timeout, last))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Close stops kube-controller-manager.
func (cm *ControllerManager) Close() error {
	if cm == nil {
		return nil
	}
	return cm.proc.stop(syscall.SIGTERM, 10*time.Second)
}
