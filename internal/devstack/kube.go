package devstack

import (
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Kube is a kube-apiserver and etcd, built from source by hack/tools.sh and
// run by controller-runtime's envtest.
type Kube struct {
	Env *envtest.Environment
	// Config is an admin client configuration.
	Config *rest.Config
	// KubeconfigPath is a kubeconfig file for kubectl, with admin rights.
	KubeconfigPath string
}

// StartKube starts the control plane, installs the CRDs found in crdPaths
// and writes dir/kubeconfig.
func StartKube(dir string, crdPaths []string) (*Kube, error) {
	assets, err := toolPath("envtest", EnvKubeAssets)
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     crdPaths,
		ErrorIfCRDPathMissing: len(crdPaths) > 0,
	}
	cfg, err := env.Start()
	if err != nil {
		// Start may fail after launching etcd and the apiserver (a bad
		// CRD, say); stop whatever it left running.
		_ = env.Stop()
		return nil, fmt.Errorf("kube-apiserver/etcd did not start (assets %s): %w", assets, err)
	}
	k := &Kube{Env: env, Config: cfg}
	user, err := env.AddUser(envtest.User{Name: "orgforge-dev", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("creating kubeconfig user: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("writing kubeconfig: %w", err)
	}
	k.KubeconfigPath = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(k.KubeconfigPath, kubeconfig, 0o600); err != nil {
		_ = env.Stop()
		return nil, err
	}
	return k, nil
}

// Stop stops the control plane.
func (k *Kube) Stop() error {
	if k == nil || k.Env == nil {
		return nil
	}
	return k.Env.Stop()
}
