package controllers

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/orgforge/orgforge/internal/storage"
)

// maxPasswordLength bounds a password written into the Secret by hand; the
// operator's own are far shorter.
const maxPasswordLength = 256

// errInvalidSecret marks a Secret edited into something the operator cannot
// use; a person has to fix it.
var errInvalidSecret = errors.New("invalid Secret")

// checkSecretPassword refuses a password the role cannot be given, or one
// that the Secret's uri and jdbc-url could not carry. Its errors never
// quote the password.
func checkSecretPassword(password string) error {
	switch {
	case password == "":
		return errors.New("its password is empty")
	case len(password) > maxPasswordLength:
		return fmt.Errorf("its password is longer than %d bytes", maxPasswordLength)
	}
	for i := 0; i < len(password); i++ {
		if password[i] < 0x20 || password[i] > 0x7e {
			return errors.New("its password holds a character other than printable ASCII")
		}
	}
	return nil
}

// ownedSecret returns the Secret if it exists, nil if it does not, and a
// conflict if a Secret of that name exists that the operator did not write.
func (r *OrganizationReconciler) ownedSecret(ctx context.Context, namespace, name string, s *scope) (*corev1.Secret, error) {
	secret := &corev1.Secret{}
	key := types.NamespacedName{Namespace: namespace, Name: name}
	err := r.Get(ctx, key, secret)
	if apierrors.IsNotFound(err) && r.APIReader != nil && !s.freshNamespace {
		// The cache may not have seen a Secret written a moment ago. Taking
		// it as missing would set a new password on the role and leave the
		// Secret with the old one, so ask the API server before concluding.
		// A namespace created in this reconcile holds no Secret to miss.
		err = r.APIReader.Get(ctx, key, secret)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s/%s: %w", namespace, name, err)
	}
	if secret.Labels[LabelOrganization] != s.org.Name {
		return nil, fmt.Errorf("%w: Secret %s/%s exists and was not written by orgforge for this Organization; rename or remove it", storage.ErrConflict, namespace, name)
	}
	return secret, nil
}

// writeSecret creates the Secret or updates it when its data or the
// operator's annotations differ; an unchanged Secret costs no write. An
// annotation given empty is removed; others are kept.
func (r *OrganizationReconciler) writeSecret(ctx context.Context, s *scope, n *notes, name string, existing *corev1.Secret, data map[string][]byte, annotations map[string]string) error {
	if existing == nil {
		set := map[string]string{}
		for k, v := range annotations {
			if v != "" {
				set[k] = v
			}
		}
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.namespace, Labels: s.labels(), Annotations: set},
			Type:       corev1.SecretTypeOpaque,
			Data:       data,
		}
		if err := controllerutil.SetControllerReference(s.org, secret, r.Scheme); err != nil {
			return err
		}
		if err := r.Create(ctx, secret); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("%w: Secret %s/%s exists and was not written by orgforge for this Organization; rename or remove it", storage.ErrConflict, s.namespace, name)
			}
			return fmt.Errorf("creating Secret %s/%s: %w", s.namespace, name, err)
		}
		n.add("wrote Secret %s/%s", s.namespace, name)
		return nil
	}
	annotated := true
	for k, v := range annotations {
		annotated = annotated && existing.Annotations[k] == v
	}
	// The cache keeps some keys as a digest: compare the Secret with the
	// data in that form (compactSecretData).
	if annotated && secretDataEqual(compactSecretData(existing.Data), compactSecretData(data)) {
		return nil
	}
	updated := existing.DeepCopy()
	updated.Data = data
	setAnnotations(&updated.ObjectMeta, annotations)
	if err := r.Update(ctx, updated); err != nil {
		return fmt.Errorf("updating Secret %s/%s: %w", s.namespace, name, err)
	}
	n.add("updated Secret %s/%s", s.namespace, name)
	return nil
}

// setAnnotations writes the operator's annotations on a Secret; an empty
// value removes one.
func setAnnotations(meta *metav1.ObjectMeta, annotations map[string]string) {
	for k, v := range annotations {
		if v == "" {
			delete(meta.Annotations, k)
			continue
		}
		metav1.SetMetaDataAnnotation(meta, k, v)
	}
}

func secretDataEqual(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || string(v) != string(w) {
			return false
		}
	}
	return true
}
