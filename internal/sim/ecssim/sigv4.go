package ecssim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// verifySigV4 checks the request's AWS Signature Version 4 (Authorization header form) against the
// secret key of the access key it names, as the service does: the canonical request is rebuilt from
// the headers listed in SignedHeaders, the string to sign from the credential scope, and the
// signature from the derived signing key.
//
// Source: AWS General Reference / IAM User Guide, "Create a signed AWS API request"
// (reference_sigv-create-signed-request.html): canonical request, string to sign, signing key
// HMAC chain "AWS4"+secret → date → region → service → "aws4_request". A request whose X-Amz-Date
// is more than 5 minutes off is refused (SignatureDoesNotMatch "Signature expired").
func verifySigV4(r *http.Request, body []byte, keys map[string]string, region, service string, now time.Time) error {
	auth := r.Header.Get("Authorization")
	const algo = "AWS4-HMAC-SHA256"
	if !strings.HasPrefix(auth, algo+" ") {
		return fmt.Errorf("missing or unsupported Authorization header (want %s)", algo)
	}
	fields := map[string]string{}
	for _, part := range strings.Split(strings.TrimPrefix(auth, algo+" "), ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok {
			fields[k] = v
		}
	}
	cred, signedHeaders, sig := fields["Credential"], fields["SignedHeaders"], fields["Signature"]
	scope := strings.Split(cred, "/")
	if len(scope) != 5 || scope[4] != "aws4_request" || signedHeaders == "" || sig == "" {
		return fmt.Errorf("malformed Authorization header")
	}
	akid, day, reg, svc := scope[0], scope[1], scope[2], scope[3]
	secret, ok := keys[akid]
	if !ok {
		return errUnrecognizedClient
	}
	if reg != region || svc != service {
		return fmt.Errorf("credential should be scoped to a valid region (%s) and service (%s), not %s/%s", region, service, reg, svc)
	}
	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil || !strings.HasPrefix(amzDate, day) {
		return fmt.Errorf("X-Amz-Date %q missing or not matching the credential scope", amzDate)
	}
	if d := now.Sub(t); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("signature expired: %s is more than 5 minutes from the server time", amzDate)
	}
	names := strings.Split(signedHeaders, ";")
	if !sort.StringsAreSorted(names) {
		return fmt.Errorf("SignedHeaders not sorted")
	}
	hasHost := false
	var canonHeaders strings.Builder
	for _, n := range names {
		var vals []string
		switch n {
		case "host":
			hasHost = true
			vals = []string{r.Host}
		case "content-length":
			vals = []string{fmt.Sprint(len(body))}
		default:
			vals = r.Header.Values(n)
		}
		for i, v := range vals {
			vals[i] = strings.Join(strings.Fields(v), " ")
		}
		canonHeaders.WriteString(n + ":" + strings.Join(vals, ",") + "\n")
	}
	if !hasHost {
		return fmt.Errorf("the host header must be signed")
	}
	payloadHash := r.Header.Get("X-Amz-Content-Sha256")
	if payloadHash == "" || payloadHash == "UNSIGNED-PAYLOAD" {
		h := sha256.Sum256(body)
		payloadHash = hex.EncodeToString(h[:])
	}
	uri := r.URL.EscapedPath()
	if uri == "" {
		uri = "/"
	}
	canonical := strings.Join([]string{r.Method, uri, canonicalQuery(r.URL.Query()), canonHeaders.String(), signedHeaders, payloadHash}, "\n")
	ch := sha256.Sum256([]byte(canonical))
	credScope := strings.Join(scope[1:], "/")
	toSign := strings.Join([]string{algo, amzDate, credScope, hex.EncodeToString(ch[:])}, "\n")
	key := hmacSHA256([]byte("AWS4"+secret), day)
	key = hmacSHA256(key, reg)
	key = hmacSHA256(key, svc)
	key = hmacSHA256(key, "aws4_request")
	want := hex.EncodeToString(hmacSHA256(key, toSign))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return errSignatureMismatch
	}
	return nil
}

func canonicalQuery(q url.Values) string {
	var parts []string
	for k, vs := range q {
		for _, v := range vs {
			parts = append(parts, awsEscape(k)+"="+awsEscape(v))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "&")
}

func awsEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}
