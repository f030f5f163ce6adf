module nmi.local/tools/azure-emulator

go 1.26.0
