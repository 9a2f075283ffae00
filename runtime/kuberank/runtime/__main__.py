from kuberank.runtime.cli import main

main()
