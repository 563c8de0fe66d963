package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tributary-cdc/tributary/internal/web"
)

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	cmd, args string
	stage     int // index of the FROM that starts its stage
}

func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	stage := -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		full := strings.Join(strings.Fields(cur.String()), " ")
		cur.Reset()
		cmd, args, _ := strings.Cut(full, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, instruction{cmd: cmd, args: args, stage: stage})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func goModVersion(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(string(raw))
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	return m[1]
}

func TestDockerfile(t *testing.T) {
	_, _ = version, commit // the -X targets of the build's -ldflags exist
	ins := parseDockerfile(t, "Dockerfile")
	var froms []instruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			froms = append(froms, in)
		}
	}
	if len(froms) < 2 {
		t.Fatalf("%d FROM lines, want a multi-stage build", len(froms))
	}
	last := len(froms) - 1
	if want := "golang:" + goModVersion(t) + "-bookworm AS build"; froms[0].args != want {
		t.Errorf("first stage FROM %q, want %q (the Go version of go.mod)", froms[0].args, want)
	}
	if want := "gcr.io/distroless/static-debian12:nonroot"; froms[last].args != want {
		t.Errorf("final FROM %q, want %q", froms[last].args, want)
	}
	for _, f := range froms {
		image, _, _ := strings.Cut(f.args, " ")
		if !strings.Contains(image, ":") || strings.HasSuffix(image, ":latest") {
			t.Errorf("FROM %s: the image tag is not pinned", image)
		}
	}

	find := func(stage int, cmd, contains string) (int, instruction) {
		for i, in := range ins {
			if in.stage == stage && in.cmd == cmd && strings.Contains(in.args, contains) {
				return i, in
			}
		}
		return -1, instruction{}
	}
	download, _ := find(0, "RUN", "go mod download")
	copyMod, _ := find(0, "COPY", "go.mod go.sum")
	copyAll, _ := find(0, "COPY", ". .")
	build, b := find(0, "RUN", "go build")
	argVersion, _ := find(0, "ARG", "VERSION")
	argCommit, _ := find(0, "ARG", "COMMIT")
	if !(copyMod >= 0 && copyMod < download && download < copyAll && copyAll < build) {
		t.Errorf("want COPY go.mod go.sum, RUN go mod download, COPY . ., RUN go build in that order; got positions %d %d %d %d", copyMod, download, copyAll, build)
	}
	if argVersion < 0 || argCommit < 0 || argVersion > build || argCommit > build {
		t.Errorf("ARG VERSION and ARG COMMIT must come before the build in the build stage")
	}
	for _, want := range []string{"CGO_ENABLED=0 go build", "-trimpath", "-s -w", "-X main.version=${VERSION}", "-X main.commit=${COMMIT}", "-o /out/tributary"} {
		if !strings.Contains(b.args, want) {
			t.Errorf("build RUN %q lacks %q", b.args, want)
		}
	}

	if _, c := find(last, "COPY", "--from=build"); c.args != "--from=build /out/tributary /tributary" {
		t.Errorf("final stage COPY %q, want the binary from the build stage at /tributary", c.args)
	}
	if _, u := find(last, "USER", ""); u.args != "nonroot:nonroot" {
		t.Errorf("final USER %q, want nonroot:nonroot", u.args)
	}
	var entry, cmd []string
	_, e := find(last, "ENTRYPOINT", "")
	if err := json.Unmarshal([]byte(e.args), &entry); err != nil || len(entry) != 1 || entry[0] != "/tributary" {
		t.Errorf("ENTRYPOINT %q, want the exec form [\"/tributary\"] (%v)", e.args, err)
	}
	_, c := find(last, "CMD", "")
	if err := json.Unmarshal([]byte(c.args), &cmd); err != nil || len(cmd) != 1 || cmd[0] != "run" {
		t.Errorf("CMD %q, want the exec form [\"run\"] (%v)", c.args, err)
	}
	_, ex := find(last, "EXPOSE", "")
	if want := strconv.Itoa(web.DefaultPort); ex.args != want {
		t.Errorf("EXPOSE %q, want %s, the default web port", ex.args, want)
	}
	if want := ":" + strconv.Itoa(web.DefaultPort); web.Default().ListenAddress != want {
		t.Errorf("default --web.listen-address %q, want %q", web.Default().ListenAddress, want)
	}
}

// TestDockerignoreKeepsSources checks that the build context keeps what the
// build needs: go.mod, go.sum, every package and every go:embed target.
func TestDockerignoreKeepsSources(t *testing.T) {
	raw, err := os.ReadFile(".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(raw), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	ignored := func(path string) bool {
		for _, p := range patterns {
			for dir := path; dir != "." && dir != "/"; dir = filepath.Dir(dir) {
				if ok, _ := filepath.Match(p, dir); ok {
					return true
				}
			}
			if strings.HasPrefix(p, "**/") {
				if ok, _ := filepath.Match(strings.TrimPrefix(p, "**/"), filepath.Base(path)); ok {
					return true
				}
			}
		}
		return false
	}
	needed := []string{"go.mod", "go.sum", "main.go"}
	embed := regexp.MustCompile(`(?m)^//go:embed (.+)$`)
	err = filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (path == ".git" || strings.HasPrefix(d.Name(), "testdata")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		needed = append(needed, path)
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range embed.FindAllStringSubmatch(string(src), -1) {
			for _, target := range strings.Fields(m[1]) {
				needed = append(needed, filepath.Join(filepath.Dir(path), strings.Trim(target, `"`)))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range needed {
		if ignored(p) {
			t.Errorf(".dockerignore excludes %s, which the build needs", p)
		}
	}
	for _, p := range []string{".git", "bin/tributary", "docs/metrics.md", "x/y.test"} {
		if !ignored(p) {
			t.Errorf(".dockerignore keeps %s in the build context", p)
		}
	}
}
