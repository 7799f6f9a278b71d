package controllers

import (
	"crypto/rand"
	"math/big"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
)

// credentialSecretName is the Secret an SMTPCredential's password lives in.
func credentialSecretName(cred *relayv1alpha1.SMTPCredential) string {
	if cred.Spec.SecretName != "" {
		return cred.Spec.SecretName
	}
	return cred.Name + "-smtp"
}

// newPassword returns 26 characters of RFC 4648 base32 (A-Z, 2-7) from crypto/rand: 130
// bits, and no character that a mail client, a shell or a URL would mangle.
func newPassword() string { return rand.Text() }

// suffixAlphabet avoids look-alike characters (0/o, 1/l/i) in usernames people read.
const suffixAlphabet = "abcdefghjkmnpqrstuvwxyz23456789"

// newUsername derives a readable username from the label and the domain, such as
// billing-app-k3x9q2@example.com; the random suffix keeps it unique and unguessable.
func newUsername(label, domain string) (string, error) {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(label) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
		if b.Len() >= 32 {
			break
		}
	}
	slug := strings.TrimRight(b.String(), "-")
	if slug == "" {
		slug = "smtp"
	}
	suffix := make([]byte, 6)
	for i := range suffix {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(suffixAlphabet))))
		if err != nil {
			return "", err
		}
		suffix[i] = suffixAlphabet[n.Int64()]
	}
	return slug + "-" + string(suffix) + "@" + domain, nil
}

// credentialSecret builds the immutable Secret for a newly issued password: the
// password in its data, and the issue ID of the login record that holds its hash.
func credentialSecret(cred *relayv1alpha1.SMTPCredential, username, password, issueID, host string, port int) *corev1.Secret {
	immutable := true
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: cred.Namespace,
			Name:      credentialSecretName(cred),
			Labels:    map[string]string{LabelCredential: cred.Name, labelManagedBy: managerName},
			Annotations: map[string]string{
				AnnotationUsername:      username,
				AnnotationIssueID:       issueID,
				AnnotationRotationToken: cred.Spec.RotationToken,
			},
		},
		Type:      corev1.SecretTypeOpaque,
		Immutable: &immutable,
		Data: map[string][]byte{
			"username": []byte(username),
			"password": []byte(password),
			"host":     []byte(host),
			"port":     []byte(strconv.Itoa(port)),
		},
	}
}
