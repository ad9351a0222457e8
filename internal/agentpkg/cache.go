package agentpkg

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// viaCache installs from the shared cache, filling it first if needed. Containers that start
// together serialise on the cache lock, so one downloads and the others extract its copy.
func (o *Options) viaCache(ctx context.Context, pkg Package, newRoot string, own owner) (string, error) {
	log := o.logger()
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		return "", fmt.Errorf("agent package cache %s (AZP_AGENT_CACHE): %w", o.CacheDir, err)
	}
	file := filepath.Join(o.CacheDir, "vsts-agent-"+pkg.Platform+"-"+pkg.Version+".tar.gz")
	var bad os.FileInfo
	try := func() (string, bool, error) {
		fi, err := os.Stat(file)
		if err != nil || bad != nil && os.SameFile(fi, bad) {
			return "", false, nil
		}
		sum, hit, err := o.fromCache(ctx, pkg, file, newRoot, own)
		if errors.Is(err, errCacheCorrupt) {
			bad = fi
			os.RemoveAll(newRoot)
			return "", false, nil
		}
		return sum, hit, err
	}
	if sum, hit, err := try(); hit || err != nil {
		return sum, err
	}
	unlock, err := lockFile(ctx, filepath.Join(o.CacheDir, ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	// Another container may have published it while we waited for the lock.
	if sum, hit, err := try(); hit || err != nil {
		return sum, err
	}
	f, err := os.CreateTemp(o.CacheDir, ".tmp-"+filepath.Base(file)+"-")
	if err != nil {
		return "", fmt.Errorf("agent package cache %s (AZP_AGENT_CACHE): %w", o.CacheDir, err)
	}
	defer os.Remove(f.Name()) // no-op once published
	defer f.Close()
	sum, teeErr, err := o.download(ctx, pkg, newRoot, own, f)
	if err != nil {
		return "", err
	}
	if teeErr == nil {
		teeErr = publish(f, file, sum)
	}
	if teeErr != nil {
		log.Warn("could not store the agent package in the cache; installed it anyway", "cache", o.CacheDir, "error", teeErr.Error())
	} else {
		log.Info("agent package stored in the cache", "file", file)
	}
	return sum, nil
}

// publish makes the cache copy visible atomically: the hash file first, then the package by
// rename, so a reader never sees a partial package and always finds the hash that goes with it.
func publish(f *os.File, file, sum string) error {
	err := f.Chmod(0o644)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = writeAtomic(file+".sha256", []byte(sum+"\n"))
	}
	if err == nil {
		err = os.Rename(f.Name(), file)
	}
	return err
}

func writeAtomic(name string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), ".tmp-"+filepath.Base(name)+"-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	return err
}

// fromCache extracts the cached file, checking its hash against the server's (or, without one,
// the hash recorded at publication). hit is false when there is no entry. A mismatch, or a broken
// archive that cannot be vouched for, is errCacheCorrupt.
func (o *Options) fromCache(ctx context.Context, pkg Package, file, newRoot string, own owner) (sum string, hit bool, err error) {
	log := o.logger()
	f, err := os.Open(file)
	if err != nil {
		return "", false, nil
	}
	defer f.Close()
	want := normHash(pkg.SHA256)
	if want == "" {
		if b, err := os.ReadFile(file + ".sha256"); err == nil {
			want = normHash(string(b))
		}
	}
	if err := os.Mkdir(newRoot, 0o755); err != nil {
		return "", true, dirError(filepath.Dir(newRoot), err)
	}
	h, xerr := extractStream(ctx, func() {}, f, newRoot, own, nil, o.limits())
	if ctx.Err() != nil {
		return "", true, ctx.Err()
	}
	if xerr != nil {
		io.Copy(h, f) // hash the rest to tell a corrupt copy from a bad package
	}
	sum = hex.EncodeToString(h.Sum(nil))
	if want != "" && sum != want || want == "" && xerr != nil {
		log.Warn("cached agent package is corrupt; replacing it", "file", file, "sha256", sum, "expected", want)
		return "", true, errCacheCorrupt
	}
	if xerr != nil {
		return "", true, xerr
	}
	log.Info("agent package taken from the cache", "file", file, "version", pkg.Version, "sha256", sum)
	return sum, true, nil
}
