// actionlint: the GitHub Actions workflow linter (github.com/rhysd/actionlint), built here from
// its Go module by scripts/build-go-tool.sh so that test/workflows/ can lint .github/workflows
// without a download from GitHub. Our own entry point over the library's Command; shellcheck
// (on PATH) is used for `run:` scripts as the upstream binary does.
//
//	bash scripts/build-go-tool.sh actionlint github.com/rhysd/actionlint
package main

import (
	"os"

	"github.com/rhysd/actionlint"
)

func main() {
	lint := actionlint.Command{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	os.Exit(lint.Main(os.Args))
}
