/*
 * schedule.c — the learning rate of each optimizer step.
 *
 * SAELens builds torch.optim.lr_scheduler.SequentialLR from a linear
 * warm-up, a main schedule and a linear decay (reference/saelens.md §1.4);
 * the closed forms below give the lr PyTorch hands optimizer step k.
 */
#include "trainer.h"

#include <math.h>

#define SAE_PI 3.14159265358979323846

/* The main phase's lr at step j of t_main (cosine schedules floor at lr_end). */
static double
main_phase_lr(const SaeConfig *cfg, int64_t t_main, int64_t j)
{
	double		lr = cfg->lr,
				end = cfg->lr_end;

	switch (cfg->lr_scheduler_name)
	{
		case SAE_LR_COSINE:
			return end + (lr - end) * (1 + cos(SAE_PI * (double) j / (double) t_main)) / 2;
		case SAE_LR_COSINE_RESTARTS:
			{
				int64_t		t0 = t_main / cfg->n_restart_cycles;

				return end + (lr - end) * (1 + cos(SAE_PI * (double) (j % t0) / (double) t0)) / 2;
			}
		default:
			return lr;
	}
}

double
sae_lr_at(const SaeConfig *cfg, int64_t total_steps, int64_t k)
{
	int64_t		warm = cfg->lr_warm_up_steps;
	int64_t		decay = cfg->lr_decay_steps;
	int64_t		t_main = total_steps - warm - decay;

	if (k < warm)
	{
		double		start = 1.0 / (double) warm;

		if (warm == 1)
			return cfg->lr;
		return cfg->lr * (start + (1 - start) * (double) k / (double) (warm - 1));
	}
	if (decay > 0 && k >= total_steps - decay)
	{
		/* constant decays from lr itself; the cosines from lr_end */
		double		from = cfg->lr_scheduler_name == SAE_LR_CONSTANT ? cfg->lr : cfg->lr_end;
		int64_t		i = k - (total_steps - decay);

		if (i > decay)
			i = decay;
		return from * (1 - (double) i / (double) decay);
	}
	return main_phase_lr(cfg, t_main > 0 ? t_main : 1, k - warm);
}
