"""squad-ft: fine-tune an encoder on SQuAD v1.1, fully and with LoRA, and compare."""
