from flopsbench.cli import main

main()
