package era

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestFormatDocSections checks that every section a source file cites as
// "§N" or "§N.M" (the project cites no other document by §) is a heading
// of docs/format.md: "## 7. Title" is section 7, "### 7.8 Title" is 7.8.
// It reads the .go files and the Markdown files other than format.md.
func TestFormatDocSections(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("docs", "format.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]bool{}
	heading := regexp.MustCompile(`(?m)^#{2,4} (\d+(?:\.\d+)*)\.? `)
	for _, m := range heading.FindAllSubmatch(doc, -1) {
		sections[string(m[1])] = true
	}
	if len(sections) == 0 {
		t.Fatal("docs/format.md has no numbered headings")
	}
	cite := regexp.MustCompile(`§\s*(\d+(?:\.\d+)*)`)
	found := 0
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != "." && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		ext := filepath.Ext(path)
		if (ext != ".go" && ext != ".md") || path == filepath.Join("docs", "format.md") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, loc := range cite.FindAllSubmatchIndex(data, -1) {
			found++
			n := strings.TrimSuffix(string(data[loc[2]:loc[3]]), ".")
			if !sections[n] {
				line := 1 + strings.Count(string(data[:loc[0]]), "\n")
				t.Errorf("%s:%d cites §%s, which docs/format.md has no heading for", path, line, n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found == 0 {
		t.Error("no § citations found: is the test running in the repository root?")
	}
}
